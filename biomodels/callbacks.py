"""Keras callbacks of a training run: stop on NaN with the place it happened, atomic
whole-model checkpoints and the epoch checkpoints a killed run resumes from (neither
written once the weights stop being finite), and validation images in TensorBoard."""

import csv
import os

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


class EpochCheckpoint(keras.callbacks.Callback):
    """At the end of each whole epoch with finite weights, the run's state as run_state.save_epoch
    writes it: what a rerun of the same command resumes from."""

    def __init__(self, model_dir, first_epoch=0):
        super().__init__()
        self.model_dir = model_dir
        self.last_saved = first_epoch  # epochs held by the newest checkpoint

    def on_epoch_end(self, epoch, logs=None):
        if _whole_and_finite(self.model):
            run_state.save_epoch(self.model, self.model_dir, epoch + 1)
            self.last_saved = epoch + 1


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the whole model at each epoch end, or only when `monitor` improves, through
    a temporary file and a rename, so a killed run never leaves a half-written file.
    An epoch cut short or weights no longer finite are never saved."""

    def __init__(self, path, monitor=None, mode="min", best=None):
        super().__init__()
        self.path, self.monitor, self.mode = path, monitor, mode
        self.best = best if best is not None else (-np.inf if mode == "max" else np.inf)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None or not np.isfinite(value):
                return
            if not (value > self.best if self.mode == "max" else value < self.best):
                return
        if not _whole_and_finite(self.model):
            return
        if self.monitor is not None:
            self.best = value
        with atomic_path(self.path) as tmp:
            self.model.save(tmp)


def _whole_and_finite(model):
    """Whether the epoch ran to its end (StopOnNaN stops it early) with finite weights."""
    return not model.stop_training and run_state.weights_are_finite(model)


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
