"""Evaluating a trained model on a split of its prepared data set: what
`python -m biomodels.evaluate`, `StudyModel.evaluate` and the end of training run.

A task's metrics come from partial results (`Task.evaluation_part`: confusion counts,
per-image matches, labels and scores) added up (biomodels.pipelines.partial_sums) and
turned into the table (`Task.metrics_from_parts`). In this process the whole split is
one part; on a cluster (biomodels.cluster) each of `Task.evaluation_units` (ranges of
the split's examples: shards' worth of tiles, whole volumes) is one task, each worker
opening the run's model once. Both give the same table.
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


def evaluate_split(task, model, split, *, model_dir, executor=None):
    """The metrics of `task` (bound to its configuration, prepared data set and
    calibration) on one split, also written to model_dir/metrics_<split>.json. `model`
    is the run's model in this process; an `executor` that splits work has its workers
    open it from `model_dir` instead (`model` may then be None)."""
    from biomodels.cluster import map_in_order

    manifest = task.manifest
    count = manifest.count(split)
    if count == 0:
        raise InputError(os.path.join(manifest.data_dir, manifest_lib.MANIFEST), f"split {split!r} holds no examples")
    if executor is not None and executor.splits_work:
        model_dir = os.path.abspath(model_dir)
        executor.check_workers([manifest.data_dir, model_dir])
        job = EvaluateJob(task.name, task.config, manifest.data_dir, model_dir, split)
        parts = map_in_order(executor, job, task.evaluation_units(split), "parts")
    else:
        whole = (0, count)
        parts = [task.evaluation_part(model, dataset_lib.evaluation_dataset(task, split), split, whole)]
    metrics = task.metrics_from_parts(partial_sums.add(parts), split)
    config_lib.write_json_atomic(os.path.join(model_dir, f"metrics_{split}.json"), metrics)
    return metrics


def evaluate_run(task, model_dir, data_dir=None, split="test", overrides=None, executor=None):
    """The metrics of the run in `model_dir` on `split`; `overrides` replace fields of the
    run's configuration (a task's evaluate options); None values are left out. `executor`
    (biomodels.cluster) runs the parts; this process by default."""
    from biomodels.runs import load_trained_model, run_config

    config = run_config(task, model_dir)
    overrides = {name: value for name, value in (overrides or {}).items() if value is not None}
    if overrides:
        unknown = sorted(set(overrides) - {field.name for field in dataclasses.fields(config)})
        if unknown:
            raise ConfigError(f"--{unknown[0]} does not apply to task {task.name}")
        config = dataclasses.replace(config, **overrides)
    data_dir = data_dir or config_lib.read_run_config(model_dir).get("data_dir")
    manifest = manifest_lib.read(data_dir, task)  # a damaged data set is said before the model loads
    bound = task.bind(config, manifest=manifest, calibration=config_lib.read_calibration(task, model_dir))
    here = executor is None or not executor.splits_work
    model = load_trained_model(model_dir) if here else None
    return evaluate_split(bound, model, split, model_dir=model_dir, executor=executor)


class EvaluateJob:
    """evaluate's work on one range of a split's examples, on a worker: the task bound
    to the run's configuration, data set and calibration, the run's model opened once
    per process; returns the task's partial result."""

    def __init__(self, task_name, config, data_dir, model_dir, split):
        self.task_name, self.config, self.data_dir, self.model_dir, self.split = (
            task_name, config, data_dir, model_dir, split)

    def __call__(self, portion):
        from biomodels import tasks
        from biomodels.runs import load_trained_model

        task = tasks.get(self.task_name)
        task = task.bind(self.config, manifest=manifest_lib.read(self.data_dir, task),
                         calibration=config_lib.read_calibration(task, self.model_dir))
        # keyed on the model files' times too: a run trained further is opened again
        key = (self.model_dir, *(os.stat(os.path.join(self.model_dir, name)).st_mtime_ns
                                 for name in ("best.keras", "last.keras")
                                 if os.path.isfile(os.path.join(self.model_dir, name))))
        if key not in _MODELS:
            _MODELS[key] = load_trained_model(self.model_dir)
        data = dataset_lib.evaluation_dataset(task, self.split, portion=portion)
        return task.evaluation_part(_MODELS[key], data, self.split, portion)
