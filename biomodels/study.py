"""biomodels from Python: `load` a study's model from wherever it is, `train` one.

    import biomodels
    model = biomodels.load("runs/cellular/20261203-101500")   # or an export, a server, a Cellpose checkpoint
    result = model.predict(image, diameter=30)                 # Segmentation(masks, flows, cellprob, diameter)
    run = biomodels.train("ccp", epochs=2)                     # a StudyModel of the new run
"""

import os

from biomodels import config as config_lib
from biomodels.errors import ConfigError, InputError

SERVER_PREFIXES = ("http://", "https://", "grpc://")
#: published models by name: their prefix and the task that serves them
NAMED_MODELS = {"cellpose:": "cellular"}


def load(source, task=None):
    """The study's model behind `source`, with its preprocessing and post-processing.

    Args:
        source: a training run's directory (biomodels.train's model_dir), an exported
            SavedModel directory, a TF Serving address (http://host:8501/v1/models/NAME
            or grpc://host:8500), or for cellular a Cellpose CPnet checkpoint file or a
            model Cellpose publishes, by name ("cellpose:cyto3"; from Cellpose's model
            cache, downloaded there once if it is missing).
        task: the task's name, needed only for a server whose address does not name
            a task (gRPC, or a model served under another name).

    Returns:
        The task's `StudyModel` subclass (CryoETModel, CellularModel, DeepISModel,
        LCHModel or CCPModel): `.predict(...)`, `.evaluate(...)`, `.export(...)`,
        `.signatures`, `.config`.

    Example:
        >>> model = biomodels.load(cryoet_run)
        >>> type(model).__name__
        'CryoETModel'
        >>> biomodels.load(str(cryoet_run / "export")).task.name
        'cryoet'
    """
    from biomodels import tasks
    from biomodels.predictors import RunPredictor, SavedModelPredictor, open_predictor

    source = os.fspath(source)
    for prefix, name in NAMED_MODELS.items():
        if source.startswith(prefix):
            task = tasks.get(task or name)
            return task.model_class(task, open_predictor(task, source))
    if source.startswith(SERVER_PREFIXES):
        task = tasks.get(task or _served_model_name(source))
        return task.model_class(task, open_predictor(task, source))
    if os.path.isfile(source):
        task = tasks.get(task or "cellular")
        return task.model_class.from_file(task, source)
    if not os.path.isdir(source):
        raise InputError(source, "no such file or directory: give a run directory, an export, a server address or "
                                 "a Cellpose checkpoint")
    if os.path.isfile(os.path.join(source, "saved_model.pb")):
        predictor = SavedModelPredictor(source)
        task = tasks.get(task or _recorded_task(predictor.task_name, source))
        return task.model_class(task, predictor)
    record = config_lib.read_run_config(source)
    task = tasks.get(task or record.get("task"))
    return task.model_class(task, RunPredictor(task, source), model_dir=source)


def train(task, data_dir=None, preset="quick", model_dir=None, seed=0, **settings):
    """Train a study's model as `python -m biomodels.train` does: into a run directory,
    then evaluated on the test split and exported.

    Args:
        task: the task's name (cryoet, cellular, deepis, lch, ccp).
        data_dir: a prepared data set (biomodels.prepare); None: the task's built-in
            synthetic data set, prepared once and cached.
        preset: "quick" (minutes on a CPU) or "paper" (the study's own settings).
        model_dir: the run directory; None: runs/<task>/<timestamp>.
        seed: seed of the weights, the data order and augmentation.
        **settings: configuration values, as the command's --set key=value
            (epochs=2, nbase=(8, 16, 32, 64)).

    Returns:
        The run as a `StudyModel` (`.model_dir`, `.test_metrics`, `.predict(...)`).

    Example:
        >>> run = biomodels.train("ccp", model_dir=str(tmp / "ccp_run"), epochs=1, steps_per_epoch=2,
        ...                       synthetic_cells=3, synthetic_tracks_per_cell=60)  # doctest: +ELLIPSIS
        Preparing the built-in synthetic ccp data set in ...
        Training ccp (...) for 1 epochs of 2 steps, batch 32, into .../ccp_run
        ...
        Exported the SavedModel to .../ccp_run/export
        >>> sorted(run.test_metrics)[:2]
        ['accuracy', 'balanced_accuracy']
    """
    from biomodels import prepare, tasks, training

    study = tasks.get(task)
    overrides = [f"{name}={_setting_text(value)}" for name, value in settings.items()]
    config = config_lib.resolve(study, preset, overrides)
    data_dir = data_dir or prepare.synthetic_dataset(study, config, seed=seed)
    model_dir = model_dir or training.default_model_dir(study)
    training.train(study, config, data_dir, model_dir, training.RunOptions(seed=seed), preset=preset)
    return load(model_dir)


def _setting_text(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _served_model_name(address):
    from biomodels.predictors.tf_serving import REST_PATH

    match = REST_PATH.match(address)
    if not match or not match["model"]:
        raise ConfigError(f"{address}: the address names no model; pass task=NAME")
    return match["model"]


def _recorded_task(name, path):
    if not name:
        raise InputError(path, "records no task (no export.json beside saved_model.pb); pass task=NAME")
    return name
