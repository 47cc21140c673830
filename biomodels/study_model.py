"""The object a Python user holds: one study's model wherever it runs (a training run, an
exported SavedModel, TF Serving), with the study's preprocessing and post-processing
attached and typed answers. Each task subclasses `StudyModel` in its `inference` module;
`biomodels.load` chooses the subclass and the backend."""

import dataclasses
import os

from biomodels import config as config_lib
from biomodels.errors import InputError


@dataclasses.dataclass(frozen=True)
class Metrics:
    """A study's metrics on a split, as `evaluate` prints them.

    Attributes:
        values: {metric name: value}, as metrics_<split>.json holds them.
        header: the printed table's column names.
        rows: the printed table's rows.
    """

    values: dict
    header: tuple
    rows: list

    def __getitem__(self, name):
        return self.values[name]

    def __str__(self):
        from biomodels.report import format_table

        return format_table(self.rows, self.header)


class StudyModel:
    """One study's model, wherever it runs. `predict` takes arrays or files and the
    options of `python -m biomodels.predict --task=NAME` as keyword arguments (same
    names, same defaults) and answers the task's typed result.

    Args:
        task: the study's Task (biomodels.tasks.get(name)).
        predictor: the Predictor it runs through (biomodels.predictors).
        model_dir: the training run's directory when the model is one, else None.

    Example:
        >>> model = biomodels.load(cryoet_run)          # a run directory of biomodels.train
        >>> model.task.name, type(model.config).__name__
        ('cryoet', 'CryoETConfig')
        >>> sorted(model.signatures)
        ['serving_default', 'standardised']
    """

    def __init__(self, task, predictor, model_dir=None):
        self.task, self.predictor, self.model_dir = task, predictor, model_dir
        #: the typed configuration the model was trained with (the quick preset for a
        #: served model, which records none)
        self.config = config_lib.model_config(task, predictor)

    @classmethod
    def from_file(cls, task, path):
        """The model of a single file in a study's own format (cellular: a Cellpose
        checkpoint, converted to Keras in memory; `Task.named_model`); other studies'
        models are folders."""
        from biomodels.predictors import KerasPredictor

        named = task.named_model(path)
        if named is None:
            raise InputError(path, f"is a file: a {task.name} model is a run directory, an export or a server address")
        return cls(task, KerasPredictor(task, *named, source=path))

    def __repr__(self):
        return f"<{type(self).__name__} of {self.predictor.source}>"

    @property
    def calibration(self):
        """What the task fitted after training (its calibration.json), {} if nothing."""
        return self.predictor.calibration

    @property
    def signatures(self):
        """{signature name: Signature (inputs and outputs with dtypes and shapes)}."""
        return self.predictor.signatures

    def options(self, given):
        """Every predict option of the task: `given` (keyword arguments) checked, the
        rest their defaults."""
        from biomodels.tasks.base import option_values

        return option_values(self.task.predict_options, given)

    def predict(self, data, **options):
        """The task's typed result for `data` (an array, or the path of a file in one of
        the task's formats); `options` are predict's, by name. Each task's class says
        what it takes and answers."""
        raise NotImplementedError

    def evaluate(self, data_dir=None, split="test", **options):
        """The study's metrics of a training run on a split of its prepared data set (by
        default the one it trained on), as `python -m biomodels.evaluate` computes them
        (and writes metrics_<split>.json); `options` are evaluate's, by name.

        Returns:
            `Metrics`: values by name; printing it prints evaluate's table.
        """
        from biomodels.tasks.base import option_values
        from biomodels.evaluation import evaluate_run

        model_dir = self._require_run("evaluate")
        overrides = option_values(self.task.evaluate_options, options)
        values = evaluate_run(self.task, model_dir, data_dir, split, overrides)
        header, rows = self.task.metrics_table(values)
        return Metrics(values=values, header=tuple(header), rows=list(rows))

    def export(self, export_dir, version=None, warmup=None, overwrite=False):
        """Export a training run for TF Serving into export_dir/<task>/<version>/, as
        `python -m biomodels.export` does; returns the version's path."""
        from biomodels.export.serving import export_run

        return export_run(self.task, self._require_run("export"), export_dir, version=version, warmup=warmup,
                          overwrite=overwrite)

    @property
    def test_metrics(self):
        """The metrics training printed for the test split ({} before it ended)."""
        path = os.path.join(self._require_run("test_metrics"), "metrics_test.json")
        return config_lib.read_json(path) if os.path.isfile(path) else {}

    def _require_run(self, what):
        if self.model_dir is None:
            raise InputError(self.predictor.source, f"{what} needs a training run's directory, not an export or a server")
        return self.model_dir


def is_path(data):
    """Whether `data` names a file or folder rather than holding values."""
    return isinstance(data, (str, os.PathLike))
