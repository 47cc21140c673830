"""Training a task's model in a run directory, then evaluating it on the test split and
exporting it: what `python -m biomodels.train` and `biomodels.train(...)` run.

The run directory holds config.json, TensorBoard logs, best.keras and last.keras, the
epoch checkpoints in backup/, metrics_test.json, log.txt, the SavedModel in export/ and,
once all of that is written, finished.json. A killed run continues from its last whole
epoch, to the weights an uninterrupted run would reach.
"""

import dataclasses
import datetime
import json
import logging
import math
import os
import sys

from biomodels import config as config_lib
from biomodels import run_state, runtime
from biomodels.errors import BiomodelsError, InputError
from biomodels.pipelines import dataset as dataset_lib

log = logging.getLogger("biomodels")


@dataclasses.dataclass
class RunOptions:
    """How to run, as opposed to what to train (the task's Config)."""

    seed: int = 0
    deterministic: bool = False
    precision: str = "auto"
    strategy: str = "auto"
    jit_compile: str = "auto"
    init_from: str = ""
    verbose: str = "auto"
    export: bool = True
    cache_bytes: int = None  # None: a quarter of the machine's memory


def run_record(task, preset, config, data_dir, seed):
    """The fields of config.json that identify a run (see run_state.run_identity)."""
    return {"task": task.name, "preset": preset, "config": config_lib.to_dict(config),
            "data_dir": os.path.abspath(data_dir), "seed": seed}


def default_model_dir(task):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", task.name, stamp)


def train(task, config, data_dir, model_dir, options=RunOptions(), preset="quick", lock=None):
    """Train (or resume), evaluate on test and export; returns the test metrics.
    `lock` is the run_state.lock_run lock the caller already holds on model_dir, if any."""
    runtime.seed_everything(options.seed, options.deterministic)
    policy = runtime.set_precision(options.precision)
    strategy = runtime.make_strategy(options.strategy)
    if not runtime.is_chief(strategy):
        model_dir = os.path.join(model_dir, f"worker-{strategy.cluster_resolver.task_id}")
    manifest = dataset_lib.read_manifest(data_dir)
    if manifest["task"] != task.name:
        raise InputError(os.path.join(data_dir, dataset_lib.MANIFEST), f"was prepared for task {manifest['task']!r}, not {task.name!r}")
    # read before anything is written, so a wrong file leaves no run directory behind
    initial_weights = _initial_weights(task, config, options.init_from) if options.init_from else None
    os.makedirs(model_dir, exist_ok=True)
    lock = lock or run_state.lock_run(model_dir)
    try:
        return _train_locked(task, config, data_dir, manifest, model_dir, options, preset, policy, strategy, initial_weights)
    finally:
        lock.release()


def _train_locked(task, config, data_dir, manifest, model_dir, options, preset, policy, strategy, initial_weights):
    import keras

    from biomodels import callbacks as callbacks_lib
    from biomodels.report import format_table, say

    _check_resumable(model_dir, task, config)
    if run_state.is_finished(model_dir):
        raise InputError(model_dir, "holds a finished run; choose a new --model_dir to train again")
    config_lib.write_json_atomic(os.path.join(model_dir, config_lib.CONFIG_FILE),
                                 {**run_record(task, preset, config, data_dir, options.seed), "precision": policy})

    train_count = manifest["splits"]["train"]["count"]
    steps_per_epoch = config.steps_per_epoch or max(1, math.ceil(train_count / config.batch_size))
    val_data, val_steps = None, None
    if manifest["splits"]["val"]["count"]:
        val_steps = math.ceil(manifest["splits"]["val"]["count"] / config.batch_size)
        val_data = dataset_lib.evaluation_dataset(task, config, data_dir, manifest, config.batch_size, "val")
    with strategy.scope():
        model = task.build_model(config, manifest)
        if initial_weights is not None:
            _set_initial_weights(model, initial_weights, options.init_from)
        model.compile(**task.compile_arguments(config, manifest, steps_per_epoch),
                      jit_compile=runtime.jit_compile(options.jit_compile, task))
        run_state.build_optimizer(model)
        first_epoch = run_state.restore_latest(model, model_dir)
    say(f"Training {task.name} ({model.count_params():,} parameters, {policy}, {strategy.num_replicas_in_sync} replica(s)) "
        f"for {config.epochs} epochs of {steps_per_epoch} steps, batch {config.batch_size}, into {model_dir}"
        + (f"; resuming after epoch {first_epoch}" if first_epoch else ""))
    train_data = dataset_lib.training_dataset(task, config, manifest, config.batch_size, options.seed, steps_per_epoch,
                                              first_epoch, options.cache_bytes)
    nan_guard = callbacks_lib.StopOnNaN()
    epoch_checkpoint = callbacks_lib.EpochCheckpoint(model_dir, first_epoch)
    callbacks = _callbacks(task, model_dir, val_data, nan_guard, epoch_checkpoint, task.early_stopping_patience(config))
    if first_epoch < config.epochs:
        model.fit(train_data, epochs=config.epochs, initial_epoch=first_epoch, steps_per_epoch=steps_per_epoch,
                  validation_data=val_data, validation_steps=val_steps, shuffle=False, callbacks=callbacks,
                  verbose=_fit_verbosity(options.verbose))
    if nan_guard.stopped_at is not None:
        kept = (f"last.keras and {run_state.BACKUP_DIR}/ hold the weights after epoch {epoch_checkpoint.last_saved}, the last finite ones"
                if epoch_checkpoint.last_saved else "no epoch ended with finite weights, so none were saved")
        raise BiomodelsError(
            f"training stopped: the loss became NaN or infinite at epoch {nan_guard.stopped_at[0] + 1}, "
            f"batch {nan_guard.stopped_at[1]}; {kept}; lower the learning rate or check the data in {data_dir}"
        )
    best = os.path.join(model_dir, "best.keras")
    if os.path.isfile(best):
        model = keras.saving.load_model(best, safe_mode=True)
    calibration = task.calibrate(model, val_data, manifest, config) if val_data is not None else {}
    if calibration:
        config_lib.write_json_atomic(os.path.join(model_dir, config_lib.CALIBRATION_FILE), calibration)
    metrics = evaluate_split(task, model, config, data_dir, manifest, "test", model_dir, calibration)
    header, rows = task.metrics_table(metrics)
    say(f"Test split ({manifest['splits']['test']['count']} examples):\n" + format_table(rows, header))
    if options.export and runtime.is_chief(strategy):
        from biomodels.export.savedmodel import replace_saved_model

        export_dir = replace_saved_model(task, model, config, os.path.join(model_dir, "export"),
                                         {"metrics_test": metrics, "calibration": calibration})
        say(f"Exported the SavedModel to {export_dir}")
    run_state.mark_finished(model_dir, {"finished": datetime.datetime.now().isoformat(timespec="seconds"),
                                        "epochs": config.epochs, "metrics_test": metrics})
    return metrics


def _fit_verbosity(requested):
    """Keras's fit verbosity: `auto` is a progress bar in a terminal and one line per
    epoch otherwise (a log file or a batch job's output would hold thousands of bar
    redraws)."""
    if requested != "auto":
        return requested
    return 1 if sys.stdout.isatty() else 2


def evaluate_split(task, model, config, data_dir, manifest, split, model_dir, calibration=None):
    """The task's metrics on one split, also written to model_dir/metrics_<split>.json."""
    if manifest["splits"].get(split, {}).get("count", 0) == 0:
        raise InputError(os.path.join(data_dir, dataset_lib.MANIFEST), f"split {split!r} holds no examples")
    data = dataset_lib.evaluation_dataset(task, config, data_dir, manifest, config.batch_size, split)
    metrics = task.evaluate(model, data, manifest, config, calibration or {}, split=split)
    config_lib.write_json_atomic(os.path.join(model_dir, f"metrics_{split}.json"), metrics)
    return metrics


def evaluate_run(task, model_dir, data_dir=None, split="test", overrides=None):
    """The metrics of the run in `model_dir` on `split`; `overrides` replace fields of the
    run's configuration (a task's evaluate options); None values are left out."""
    import dataclasses

    from biomodels.errors import ConfigError
    from biomodels.runs import load_trained_model, run_config
    from biomodels.pipelines import dataset as dataset_lib

    config = run_config(task, model_dir)
    overrides = {name: value for name, value in (overrides or {}).items() if value is not None}
    if overrides:
        unknown = sorted(set(overrides) - {field.name for field in dataclasses.fields(config)})
        if unknown:
            raise ConfigError(f"--{unknown[0]} does not apply to task {task.name}")
        config = dataclasses.replace(config, **overrides)
    data_dir = data_dir or config_lib.read_run_config(model_dir).get("data_dir")
    manifest = dataset_lib.read_manifest(data_dir)
    model = load_trained_model(model_dir)
    return evaluate_split(task, model, config, data_dir, manifest, split, model_dir, config_lib.read_calibration(model_dir))


def _check_resumable(model_dir, task, config):
    """A model_dir that holds another run's config must not be silently mixed."""
    path = os.path.join(model_dir, config_lib.CONFIG_FILE)
    if not os.path.isfile(path):
        return
    previous = config_lib.read_json(path)
    current = json.loads(json.dumps(config_lib.to_dict(config)))  # tuples as JSON lists, like the file
    if previous.get("task") != task.name or previous.get("config") != current:
        raise InputError(path, "belongs to a run with another task or configuration; use a new --model_dir to start afresh")


def _initial_weights(task, config, path):
    """The weights --init_from names: a model the task reads from `path` (a study's own
    checkpoint format), else a run directory or a .keras file."""
    import keras

    from biomodels.runs import load_trained_model

    import biomodels.models  # noqa: F401  registers the custom classes for deserialisation

    source = task.initial_model(path, config)
    if source is None and os.path.isdir(path):
        source = load_trained_model(path)
    if source is None:
        try:
            source = keras.saving.load_model(path, safe_mode=True)
        except Exception as error:
            raise InputError(path, f"cannot load initial weights ({str(error).splitlines()[0]})") from None
    return source.get_weights()


def _set_initial_weights(model, weights, path):
    try:
        model.set_weights(weights)
    except ValueError as error:
        raise InputError(path, f"weights do not fit this model's configuration ({str(error).splitlines()[0]})") from None
    log.info("initialised weights from %s", path)


def _callbacks(task, model_dir, val_data, nan_guard, epoch_checkpoint, patience=0):
    import keras

    from biomodels.callbacks import AtomicCheckpoint, ImageSummary, best_in_history, trim_history

    monitor, mode = task.checkpoint_monitor
    if val_data is None:
        monitor, mode = "loss", "min"
    history = os.path.join(model_dir, "history.csv")
    trim_history(history, epoch_checkpoint.last_saved)
    callbacks = [
        nan_guard,
        AtomicCheckpoint(os.path.join(model_dir, "last.keras")),
        AtomicCheckpoint(os.path.join(model_dir, "best.keras"), monitor=monitor, mode=mode,
                         best=best_in_history(history, monitor, mode)),
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")),
        keras.callbacks.CSVLogger(history, append=True),
    ]
    if patience and val_data is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience))
    if val_data is not None:
        callbacks.append(ImageSummary(task, val_data, os.path.join(model_dir, "logs", "validation_images"),
                                      count=task.summary_examples))
    return callbacks + [epoch_checkpoint]  # last: what it saves, the epoch's other outputs already hold


