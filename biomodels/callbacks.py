"""Keras callbacks of a training run: stop on NaN with the place it happened, the
epoch checkpoints (last.keras, best.keras and the epoch checkpoint a killed run resumes
from, from one save, as often as a save costs at most 5 % of the run, none written once
the weights stop being finite), early stopping
that counts across a resume, and validation images in TensorBoard."""

import csv
import os
import time

import keras
import numpy as np

from biomodels import run_state
from biomodels.atomic import atomic_path


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first non-finite loss and remember (epoch, batch), to report why."""

    def __init__(self):
        super().__init__()
        self.stopped_at = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.stopped_at = (self._epoch, batch)
            self.model.stop_training = True


_CURRENT = "the weights as they are"


class EpochCheckpoints(keras.callbacks.Callback):
    """The run's files at the end of an epoch with finite weights, when a save is due: the
    model (weights, optimizer and configuration) saved once, to last.keras; best.keras
    and the epoch checkpoint a rerun resumes from (run_state.save_epoch) are hard links
    to that file. Each file is written under a temporary name and renamed, so a killed run
    never leaves a half-written one.

    When a save is due: every `every` epochs; with `every=0`, whenever the last save took
    at most `budget` of the time since it ended (so saving costs at most that share of the
    run whatever the model's size; the first epoch is always saved, to measure it), and
    always after the last epoch trained (the last of the run, or early stopping's). An
    epoch that `monitor` improves but that is not saved keeps its weights in memory until
    the next save writes them to best.keras; a killed run retrains the epochs since its
    last checkpoint (trim_history forgets them), so best.keras, the history and the
    checkpoint always agree. An epoch cut short (`nan_guard`, a StopOnNaN, fired) or with
    weights no longer finite is never saved."""

    def __init__(self, model_dir, *, first_epoch=0, monitor="loss", mode="min", best=None, every=0, budget=0.05,
                 nan_guard=None, clock=time.perf_counter):
        super().__init__()
        self.model_dir, self.monitor, self.mode = model_dir, monitor, mode
        self.best = best if best is not None else (-np.inf if mode == "max" else np.inf)
        self.every, self.budget, self.nan_guard, self.clock = every, budget, nan_guard, clock
        self.last_saved = first_epoch  # epochs held by the newest epoch checkpoint
        self.saves = 0  # saves made by this callback (this process)
        self._unsaved = None  # epochs done by the weights as they are, when more than last_saved
        self._best_weights = None  # a best epoch not yet in best.keras: _CURRENT or its weights
        self._save_seconds = None  # what the last save took
        self._since = None  # when it ended (or training began)

    def on_train_begin(self, logs=None):
        self._since = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        if self._cut_short() or not run_state.weights_are_finite(self.model):
            self._unsaved = None  # those weights are gone
            return
        self._unsaved = epoch + 1
        value = (logs or {}).get(self.monitor)
        if value is not None and np.isfinite(value) and (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            self._best_weights = _CURRENT
        if self.model.stop_training or self._due(epoch + 1):
            self._save()
        elif self._best_weights is _CURRENT:  # kept for the next save
            self._best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        """Save the last epoch trained, if it was not (the weights are still its own)."""
        if self._unsaved is not None and not self._cut_short() and run_state.weights_are_finite(self.model):
            self._save()

    def _cut_short(self):
        if self.nan_guard is not None:
            return self.nan_guard.stopped_at is not None
        return self.model.stop_training  # without a guard, any stop may be one

    def _due(self, epochs_done):
        if self.every:
            return epochs_done % self.every == 0
        if self._save_seconds is None or self._since is None:
            return True
        return self._save_seconds <= self.budget * (self.clock() - self._since)

    def _save(self):
        start = self.clock()
        epochs_done, best = self._unsaved, self._best_weights
        best_path, last = os.path.join(self.model_dir, "best.keras"), os.path.join(self.model_dir, "last.keras")
        if best is not None and best is not _CURRENT:  # an earlier epoch's weights (with today's optimizer)
            current = self.model.get_weights()
            self.model.set_weights(best)
            try:
                with atomic_path(best_path) as tmp:
                    run_state.save_model(self.model, tmp)
            finally:
                self.model.set_weights(current)
        with atomic_path(last) as tmp:
            run_state.save_model(self.model, tmp)
        if best is _CURRENT:
            with atomic_path(best_path) as tmp:
                run_state.link_or_copy(last, tmp)
        run_state.save_epoch(self.model, self.model_dir, epochs_done, saved_model=last)
        self.last_saved, self.saves, self._unsaved, self._best_weights = epochs_done, self.saves + 1, None, None
        self._since = self.clock()
        self._save_seconds = self._since - start


def trim_history(history_csv, epochs_done):
    """Drop CSVLogger's rows of epochs after `epochs_done`: an epoch a killed run logged
    but did not checkpoint is trained again when the run resumes."""
    if not os.path.isfile(history_csv):
        return
    with open(history_csv, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, [row for row in reader if int(row["epoch"]) < epochs_done]
    with atomic_path(history_csv) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def best_in_history(history_csv, monitor, mode):
    """The best `monitor` value logged so far by CSVLogger, or None: a resumed run
    must not replace best.keras with a worse model."""
    values = [value for value in logged_values(history_csv, monitor) if np.isfinite(value)]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def logged_values(history_csv, monitor):
    """The `monitor` value of each epoch CSVLogger logged, in order (NaN where missing)."""
    if not os.path.isfile(history_csv):
        return []
    with open(history_csv, newline="") as handle:
        return [float(row[monitor]) if row.get(monitor) not in (None, "") else float("nan")
                for row in csv.DictReader(handle)]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping on val_loss (min) whose count goes on across a resume: the best value
    and the epochs since it are replayed from the run's history.csv (the epochs already
    done), as Keras's own rule counted them, so a resumed run stops at the epoch an
    uninterrupted one stops at."""

    def __init__(self, patience, history_csv):
        super().__init__(monitor="val_loss", mode="min", patience=patience)
        self.history_csv = history_csv

    def on_train_begin(self, logs=None):
        self.replay()

    def replay(self):
        """Start counting afresh, then count the logged epochs as Keras's on_epoch_end
        counts them; True when the patience ran out in them (the run would have stopped
        already)."""
        super().on_train_begin()
        if self.monitor_op is None:
            self._set_monitor_op()
        stopped = False
        for epoch, value in enumerate(logged_values(self.history_csv, self.monitor)):
            if not np.isfinite(value):
                continue
            self.wait += 1
            if self._is_improvement(value, self.best):
                self.best, self.best_epoch, self.wait = value, epoch, 0
            elif self.wait >= self.patience and epoch > 0:
                stopped = True
        return stopped


class ImageSummary(keras.callbacks.Callback):
    """Each epoch, write a few validation examples (the task decides which panels:
    input, ground truth, prediction) to TensorBoard as images."""

    def __init__(self, task, val_data, log_dir, count=3):
        super().__init__()
        self.task, self.log_dir = task, log_dir
        # (inputs, targets[, sample weights]); batched by the task, which pads examples of
        # different sizes (ccp's traces, cellular's images)
        batch = next(iter(task.batch(val_data.unbatch(), count, training=False)))
        self.inputs, self.targets = batch[0], batch[1]
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        images = self.task.summary_images(self.model, self.inputs, self.targets)
        if not images:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for name, batch in images.items():
                tf.summary.image(name, batch, step=epoch, max_outputs=len(batch))
        self._writer.flush()
