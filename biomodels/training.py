"""Training a task's model in a run directory, then evaluating it on the test split and
exporting it: what `python -m biomodels.train` and `biomodels.train(...)` run.

The run directory holds config.json, TensorBoard logs, best.keras and last.keras, the
epoch checkpoints in backup/, metrics_test.json, log.txt, the SavedModel in export/ and,
once all of that is written, finished.json. A killed run continues from its last epoch
checkpoint (saved as often as a save costs at most 5 % of the run, or every
`checkpoint_every` epochs), to the weights an uninterrupted run would reach.
"""

import dataclasses
import datetime
import json
import logging
import math
import os
import sys

from biomodels import config as config_lib
from biomodels import evaluation, run_state, runtime
from biomodels.errors import BiomodelsError, InputError
from biomodels.pipelines import dataset as dataset_lib
from biomodels.pipelines import manifest as manifest_lib

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
    checkpoint_every: int = 0  # epochs between checkpoints; 0: as often as a save costs ≤ 5 % of the run


def run_record(task, preset, config, data_dir, seed):
    """The fields of config.json that identify a run (see run_state.run_identity)."""
    return {"task": task.name, "preset": preset, "config": config_lib.to_dict(config),
            "data_dir": os.path.abspath(data_dir), "seed": seed}


def default_model_dir(task):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", task.name, stamp)


def train(task, config, data_dir, model_dir, options=RunOptions(), *, preset="quick", lock=None):
    """Train (or resume), evaluate on test and export; returns the test metrics.
    `lock` is the run_state.lock_run lock the caller already holds on model_dir, if any."""
    run = TrainingRun(task, config, data_dir, model_dir, options, preset=preset)
    lock = lock or run_state.lock_run(run.model_dir)
    try:
        return run.complete()
    finally:
        lock.release()


class TrainingRun:
    """One training run: its task, configuration, prepared data, directory, run options
    and distribution strategy, with a method for each step of `complete`. Making it
    checks the data set and the initial weights before anything is written."""

    def __init__(self, task, config, data_dir, model_dir, options=RunOptions(), *, preset="quick"):
        runtime.seed_everything(options.seed, options.deterministic)
        self.config, self.data_dir, self.options, self.preset = config, data_dir, options, preset
        self.policy = runtime.set_precision(options.precision)
        self.strategy = runtime.make_strategy(options.strategy)
        if not runtime.is_chief(self.strategy):
            model_dir = os.path.join(model_dir, f"worker-{self.strategy.cluster_resolver.task_id}")
        self.model_dir = model_dir
        self.manifest = manifest_lib.read(data_dir, task)
        self.task = task.bind(config, manifest=self.manifest)
        # read before anything is written, so a wrong file leaves no run directory behind
        self.initial_weights = _initial_weights(self.task, options.init_from) if options.init_from else None
        os.makedirs(model_dir, exist_ok=True)
        # steps_per_epoch=0: a pass over the training examples; one-pass epochs (Cellpose's)
        # count the examples training keeps, the last batch smaller
        self.one_pass = not config.steps_per_epoch and self.task.one_pass_epochs
        training_examples = dataset_lib.kept_count(self.task) if self.one_pass else self.split_count("train")
        if self.one_pass and not training_examples:
            raise InputError(data_dir, "training uses none of the train split's examples (cellular leaves out "
                                       "images with fewer masks than --set min_masks)")
        self.steps_per_epoch = config.steps_per_epoch or max(1, math.ceil(training_examples / config.batch_size))

    def split_count(self, split):
        return self.manifest.count(split)

    def complete(self):
        """Every step, from a fresh or half-trained run directory to finished.json;
        returns the test metrics."""
        from biomodels.report import format_table, say

        self.start()
        val_data = self.validation_data()
        model, first_epoch = self.compile()
        say(f"Training {self.task.name} ({model.count_params():,} parameters, {self.policy}, "
            f"{self.strategy.num_replicas_in_sync} replica(s)) for {self.config.epochs} epochs of {self.steps_per_epoch} "
            f"steps, batch {self.config.batch_size}, into {self.model_dir}"
            + (f"; resuming after epoch {first_epoch}" if first_epoch else ""))
        model = self.fit(model, first_epoch, val_data)
        calibration = self.calibrate(model, val_data)
        metrics = evaluation.evaluate_split(self.task.bind(manifest=self.manifest, calibration=calibration), model, "test",
                                 model_dir=self.model_dir)
        header, rows = self.task.metrics_table(metrics)
        say(f"Test split ({self.split_count('test')} examples):\n" + format_table(rows, header))
        self.export(model, metrics, calibration)
        run_state.mark_finished(self.model_dir, {"finished": datetime.datetime.now().isoformat(timespec="seconds"),
                                                 "epochs": self.config.epochs, "metrics_test": metrics})
        return metrics

    def start(self):
        """Refuse a directory of another run or a finished one; write config.json."""
        _check_resumable(self.model_dir, self.task, self.config)
        if run_state.is_finished(self.model_dir):
            raise InputError(self.model_dir, "holds a finished run; choose a new --model_dir to train again")
        record = run_record(self.task, self.preset, self.config, self.data_dir, self.options.seed)
        config_lib.write_json_atomic(os.path.join(self.model_dir, config_lib.CONFIG_FILE),
                                     {**record, "precision": self.policy})

    def validation_data(self):
        """The validation split's batches, None when it is empty."""
        if not self.split_count("val"):
            return None
        return dataset_lib.evaluation_dataset(self.task, "val")

    def compile(self):
        """(the compiled model under the strategy, the epochs already done), with the
        initial weights or the latest epoch checkpoint restored."""
        with self.strategy.scope():
            model = self.task.build_model()
            if self.initial_weights is not None:
                _set_initial_weights(model, self.initial_weights, self.options.init_from)
            model.compile(**self.task.compile_arguments(self.steps_per_epoch),
                          jit_compile=runtime.jit_compile(self.options.jit_compile, self.task))
            run_state.build_optimizer(model)
            return model, run_state.restore_latest(model, self.model_dir)

    def fit(self, model, first_epoch, val_data):
        """Train from `first_epoch` to the configuration's epochs; returns the best model
        (best.keras when validation chose one). A NaN or infinite loss stops the run
        with an error naming the epoch and what was kept."""
        import keras

        from biomodels import callbacks as callbacks_lib

        config, options = self.config, self.options
        train_data = dataset_lib.training_dataset(self.task, options.seed, steps_per_epoch=self.steps_per_epoch,
                                                  first_epoch=first_epoch, cache_bytes=options.cache_bytes,
                                                  one_pass=self.one_pass)
        nan_guard = callbacks_lib.StopOnNaN()
        # workers time their saves apart: a fixed interval keeps their checkpoints at one epoch
        every = options.checkpoint_every or (1 if runtime.is_multi_worker(self.strategy) else 0)
        callbacks = _callbacks(self.task, self.model_dir, val_data, nan_guard=nan_guard, first_epoch=first_epoch,
                               patience=self.task.early_stopping_patience(), checkpoint_every=every)
        epoch_checkpoint = callbacks[-1]
        stopping = [callback for callback in callbacks if isinstance(callback, callbacks_lib.ResumableEarlyStopping)]
        if stopping and stopping[0].replay():
            log.info("early stopping had stopped this run after epoch %d: not training further", first_epoch)
        elif first_epoch < config.epochs:
            val_steps = math.ceil(self.split_count("val") / config.batch_size) if val_data is not None else None
            model.fit(train_data, epochs=config.epochs, initial_epoch=first_epoch, steps_per_epoch=self.steps_per_epoch,
                      validation_data=val_data, validation_steps=val_steps, shuffle=False, callbacks=callbacks,
                      verbose=_fit_verbosity(options.verbose))
        if nan_guard.stopped_at is not None:
            kept = (f"last.keras and {run_state.BACKUP_DIR}/ hold the weights after epoch {epoch_checkpoint.last_saved}, "
                    "the last finite ones saved" if epoch_checkpoint.last_saved else
                    "no epoch ended with finite weights, so none were saved")
            raise BiomodelsError(
                f"training stopped: the loss became NaN or infinite at epoch {nan_guard.stopped_at[0] + 1}, "
                f"batch {nan_guard.stopped_at[1]}; {kept}; lower the learning rate or check the data in {self.data_dir}"
            )
        best = os.path.join(self.model_dir, "best.keras")
        return keras.saving.load_model(best, safe_mode=True) if os.path.isfile(best) else model

    def calibrate(self, model, val_data):
        """What the task fits on the validation split, kept in calibration.json ({} without one)."""
        calibration = self.task.calibrate(model, val_data) if val_data is not None else {}
        if calibration:
            config_lib.write_json_atomic(os.path.join(self.model_dir, config_lib.CALIBRATION_FILE), calibration)
        return calibration

    def export(self, model, metrics, calibration):
        """The SavedModel in model_dir/export (chief worker only, unless turned off)."""
        from biomodels.report import say

        if not self.options.export or not runtime.is_chief(self.strategy):
            return
        from biomodels.export.savedmodel import replace_saved_model

        export_dir = replace_saved_model(self.task, model, self.config, os.path.join(self.model_dir, "export"),
                                         {"metrics_test": metrics, "calibration": calibration})
        say(f"Exported the SavedModel to {export_dir}")


def _fit_verbosity(requested):
    """Keras's fit verbosity: `auto` is a progress bar in a terminal and one line per
    epoch otherwise (a log file or a batch job's output would hold thousands of bar
    redraws)."""
    if requested != "auto":
        return requested
    return 1 if sys.stdout.isatty() else 2


def _check_resumable(model_dir, task, config):
    """A model_dir that holds another run's config must not be silently mixed."""
    path = os.path.join(model_dir, config_lib.CONFIG_FILE)
    if not os.path.isfile(path):
        return
    previous = config_lib.read_json(path)
    current = json.loads(json.dumps(config_lib.to_dict(config)))  # tuples as JSON lists, like the file
    if previous.get("task") != task.name or previous.get("config") != current:
        raise InputError(path, "belongs to a run with another task or configuration; use a new --model_dir to start afresh")


def _initial_weights(task, path):
    """The weights --init_from names: a model the task (bound to its configuration)
    reads from `path` (a study's own checkpoint format), else a run directory or a .keras
    file."""
    import keras

    from biomodels.runs import load_trained_model

    import biomodels.models  # noqa: F401  registers the custom classes for deserialisation

    source = task.initial_model(path)
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


def _callbacks(task, model_dir, val_data, *, nan_guard, first_epoch, patience=0, checkpoint_every=0):
    """The run's callbacks; the last is its EpochCheckpoints."""
    import keras

    from biomodels.callbacks import (EpochCheckpoints, ImageSummary, ResumableEarlyStopping, best_in_history,
                                     trim_history)

    monitor, mode = task.checkpoint_monitor
    if val_data is None:
        monitor, mode = "loss", "min"
    history = os.path.join(model_dir, "history.csv")
    trim_history(history, first_epoch)
    callbacks = [
        nan_guard,
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")),
        keras.callbacks.CSVLogger(history, append=True),
    ]
    if patience and val_data is not None:
        callbacks.append(ResumableEarlyStopping(patience, history))
    if val_data is not None:
        callbacks.append(ImageSummary(task, val_data, os.path.join(model_dir, "logs", "validation_images"),
                                      count=task.summary_examples))
    # last: what it saves, the epoch's other outputs (history.csv) already hold
    return callbacks + [EpochCheckpoints(model_dir, first_epoch=first_epoch, monitor=monitor, mode=mode,
                                         best=best_in_history(history, monitor, mode), every=checkpoint_every,
                                         nan_guard=nan_guard)]
