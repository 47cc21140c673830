"""Evaluating a trained model on a split of its prepared data set: what
`python -m biomodels.evaluate`, `StudyModel.evaluate` and the end of training run.

A task's metrics come from partial results (`Task.evaluation_part`: confusion counts,
per-image matches, labels and scores) added up (biomodels.pipelines.partial_sums) and
turned into the table (`Task.metrics_from_parts`). In this process the whole split is
one part; on a cluster (biomodels.cluster) each of `Task.evaluation_units` (ranges of
the split's examples: shards' worth of tiles, whole volumes) is one task, each worker
opening the model once. Both give the same table. A published model by name (cellular:
cellpose:cyto3) or a model file of the study's own format is evaluated as a run is.
"""

import dataclasses
import os

from biomodels import config as config_lib
from biomodels.errors import ConfigError, InputError
from biomodels.pipelines import dataset as dataset_lib
from biomodels.pipelines import manifest as manifest_lib
from biomodels.pipelines import partial_sums

#: the trained models this process has opened, by run directory and file times (a worker opens each once)
_MODELS = {}


def evaluate_split(task, model, split, *, model_dir=None, model_source=None, executor=None):
    """The metrics of `task` (bound to its configuration, prepared data set and
    calibration) on one split, also written to model_dir/metrics_<split>.json when
    `model_dir` is given. `model` is the model in this process; an `executor` that splits
    work has its workers open it from `model_source` (a run directory, or a source of
    `Task.named_model`; default `model_dir`) instead (`model` may then be None)."""
    from biomodels.cluster import map_in_order

    manifest = task.manifest
    count = manifest.count(split)
    if count == 0:
        raise InputError(os.path.join(manifest.data_dir, manifest_lib.MANIFEST), f"split {split!r} holds no examples")
    if executor is not None and executor.splits_work:
        source = model_source or os.path.abspath(model_dir)
        executor.check_workers([manifest.data_dir] + ([source] if os.path.isdir(source) else []))
        job = EvaluateJob(task.name, task.config, manifest.data_dir, source, split, task.calibration)
        parts = map_in_order(executor, job, task.evaluation_units(split), "parts")
    else:
        whole = (0, count)
        parts = [task.evaluation_part(model, dataset_lib.evaluation_dataset(task, split), split, whole)]
    metrics = task.metrics_from_parts(partial_sums.add(parts), split)
    if model_dir is not None:
        config_lib.write_json_atomic(os.path.join(model_dir, f"metrics_{split}.json"), metrics)
    return metrics


def with_overrides(task, config, overrides):
    """`config` with the fields `overrides` names (a task's evaluate options) replaced;
    None values are left out."""
    overrides = {name: value for name, value in (overrides or {}).items() if value is not None}
    if overrides:
        unknown = sorted(set(overrides) - {field.name for field in dataclasses.fields(config)})
        if unknown:
            raise ConfigError(f"--{unknown[0]} does not apply to task {task.name}")
        config = dataclasses.replace(config, **overrides)
    return config


def evaluate_run(task, model_dir, data_dir=None, split="test", overrides=None, executor=None):
    """The metrics of the run in `model_dir` on `split`; `overrides` replace fields of the
    run's configuration (a task's evaluate options); None values are left out. `executor`
    (biomodels.cluster) runs the parts; this process by default."""
    from biomodels.runs import load_trained_model, run_config

    config = with_overrides(task, run_config(task, model_dir), overrides)
    data_dir = data_dir or config_lib.read_run_config(model_dir).get("data_dir")
    manifest = manifest_lib.read(data_dir, task)  # a damaged data set is said before the model loads
    bound = task.bind(config, manifest=manifest, calibration=config_lib.read_calibration(task, model_dir))
    here = executor is None or not executor.splits_work
    model = load_trained_model(model_dir) if here else None
    return evaluate_split(bound, model, split, model_dir=model_dir, executor=executor)


def evaluate_named(task, source, data_dir, split="test", *, overrides=None, executor=None, output_dir=None):
    """The metrics of a published model by name or a model file of the study's own format
    (`Task.named_model`, cellular: cellpose:cyto3, a Cellpose checkpoint) on `split` of
    the prepared data set in `data_dir`, with no calibration (cellular rescales images
    to the data set's mean diameter); written to output_dir/metrics_<split>.json when
    `output_dir` is given."""
    manifest = manifest_lib.read(data_dir, task)
    named = task.named_model(source)
    if named is None:
        raise InputError(source, f"is not a model task {task.name} knows by name or file: give --model_dir=RUN")
    model, config = named
    bound = task.bind(with_overrides(task, config, overrides), manifest=manifest, calibration={})
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
    return evaluate_split(bound, model, split, model_dir=output_dir, model_source=source, executor=executor)


class EvaluateJob:
    """evaluate's work on one range of a split's examples, on a worker: the task bound
    to the configuration, data set and calibration, the model opened once per process
    (a run's, or a named one); returns the task's partial result."""

    def __init__(self, task_name, config, data_dir, model_source, split, calibration):
        self.task_name, self.config, self.data_dir, self.model_source, self.split = (
            task_name, config, data_dir, model_source, split)
        self.calibration = calibration

    def __call__(self, portion):
        from biomodels import tasks

        task = tasks.get(self.task_name)
        task = task.bind(self.config, manifest=manifest_lib.read(self.data_dir, task), calibration=self.calibration)
        data = dataset_lib.evaluation_dataset(task, self.split, portion=portion)
        return task.evaluation_part(opened_model(task, self.model_source), data, self.split, portion)


def opened_model(task, source):
    """The Keras model of a run directory or of a `Task.named_model` source, opened once
    per process: a run's keyed on its model files' times too, so a run trained further
    is opened again."""
    from biomodels.runs import load_trained_model

    if os.path.isdir(source):
        key = (source, *(os.stat(os.path.join(source, name)).st_mtime_ns
                         for name in ("best.keras", "last.keras") if os.path.isfile(os.path.join(source, name))))
    else:
        key = (source,)
    if key not in _MODELS:
        _MODELS[key] = load_trained_model(source) if os.path.isdir(source) else task.named_model(source)[0]
    return _MODELS[key]
