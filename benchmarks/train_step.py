"""What a training step costs as users run it: through the `train` command, against the
bare compiled step, and (cellular) against Cellpose's PyTorch step; and what an epoch's
checkpoints cost against a quick-preset epoch.

    python benchmarks/train_step.py --task=cellular [--preset=paper] [--steps=8] [--short=2] [--extra=N] [--repeats=2]
    python benchmarks/train_step.py --task=lch --checkpoints_only

- command step: `python -m biomodels.train --epochs=1 --steps_per_epoch=S` run twice, with
  S = --short and --short + --extra, in fresh processes on the task's built-in synthetic
  data, the fastest of --repeats runs each; the difference of the two wall times over the
  extra steps is one step, with start-up, evaluation and export cancelled out. --extra
  defaults to enough steps for about 60 s of training (at least 8), from the bare step.
- in-fit step: `model.fit` on the task's training pipeline, the mean time between
  batch ends (what the command's step is made of, without the command's callbacks).
- bare step: `train_on_batch` of the compiled model (the task's loss, optimizer and XLA
  choice) on batches of that pipeline made beforehand, the mean: --steps batches, or as
  many as fill 10 s when they take less (batches of different shapes cost different
  steps: ccp's).
- Keras's batch norm: the bare step again with Keras's own batch norm computation in place
  of TensorFlow's fused kernel (models whose batch norm goes through it).
- Cellpose's step (cellular): CPnet of the same widths, batch and crop, in the reference
  environment (benchmarks/reference/cpnet_train_step.py).
- checkpoints: what the run's saves (last.keras, best.keras, the epoch checkpoint, as
  often as `train` makes them) took an epoch, over the quick preset's epochs (as many
  as fill about 90 s, at least 5) of `fit` on the pipeline, against that fit's median
  epoch without them.

Targets (issue 27): command step ≤ 1.1 × the bare step for every task; the paper CPnet
step through the command ≥ 1.5× faster than Cellpose's; checkpoints ≤ 5 % of an epoch.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from biomodels import cli  # noqa: E402

tf = cli.import_tensorflow()

import numpy as np  # noqa: E402

import reference_env  # noqa: E402
from biomodels import config as config_lib  # noqa: E402
from biomodels import prepare, run_state, runtime, tasks  # noqa: E402
from biomodels.pipelines import dataset as dataset_lib  # noqa: E402
from biomodels.pipelines import manifest as manifest_lib  # noqa: E402


def command_seconds(task_name, preset, data_dir, steps, repeats):
    """Wall seconds of a `train` command of one epoch of `steps` steps in a fresh process,
    the fastest of `repeats`."""
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as model_dir:
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "biomodels.train", f"--task={task_name}",
                                     f"--preset={preset}", "--epochs=1", f"--steps_per_epoch={steps}",
                                     f"--data_dir={data_dir}", f"--model_dir={model_dir}"], capture_output=True, text=True)
            times.append(time.perf_counter() - start)
        if result.returncode:
            sys.exit(f"the train command failed:\n{result.stderr[-3000:]}")
    return min(times)


def compiled_model(task):
    model = task.build_model()
    model.compile(**task.compile_arguments(steps_per_epoch=100), jit_compile=runtime.jit_compile("auto", task))
    run_state.build_optimizer(model)
    return model


def bare_step_seconds(task, steps):
    """Mean seconds of `train_on_batch` over `steps` batches of the training pipeline,
    made beforehand (each batch once untimed first: tasks whose batches differ in shape,
    such as ccp's traces bucketed by length, trace the step for each)."""
    batches = list(dataset_lib.training_dataset(task, 0, steps_per_epoch=10**6).take(steps))
    model = compiled_model(task)
    for batch in batches:
        model.train_on_batch(*batch)
    start = time.perf_counter()
    for batch in batches:
        model.train_on_batch(*batch)
    return (time.perf_counter() - start) / steps, model


def representative_bare_step_seconds(task, steps, seconds=10.0):
    """(seconds, model, batches) of `bare_step_seconds` over `steps` batches, or when those
    take less than `seconds`, over as many as fill it: a step's cost follows its batch's
    shape where batches differ (ccp's bucketed traces: 5 ms at 13 frames, 60 ms at 299),
    and a few batches are no sample of the thousands a command trains on."""
    bare, model = bare_step_seconds(task, steps)
    if bare * steps < seconds:
        del model
        steps = math.ceil(seconds / bare)
        bare, model = bare_step_seconds(task, steps)
    return bare, model, steps


def keras_batch_norm_step_seconds(task, model, steps):
    """The bare step with Keras's own batch norm computation in place of the fused kernel
    (biomodels.models.layers.BatchNormalization.fused); None for a model without it."""
    from biomodels.models.layers import BatchNormalization

    if not any(isinstance(layer, BatchNormalization) for layer in model._flatten_layers()):
        return None
    BatchNormalization.fused = False
    try:
        return bare_step_seconds(task, steps)[0]
    finally:
        BatchNormalization.fused = True


def in_fit_step_seconds(task, model, steps):
    """Median seconds between batch ends of `fit` on the training pipeline (after its first step)."""
    import keras

    class BatchEnds(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    ends = BatchEnds()
    data = dataset_lib.training_dataset(task, 0, steps_per_epoch=steps + 1)
    model.fit(data, epochs=1, steps_per_epoch=steps + 1, verbose=0, callbacks=[ends])
    return float(np.mean(np.diff(ends.times)[1:]))


def checkpoint_cost(task, model, steps, epochs):
    """(seconds the run's checkpoints took an epoch, the median epoch's seconds without
    them, the saves made) over `epochs` epochs of `fit` on the training pipeline with the
    run's EpochCheckpoints as `train` makes them (a save whenever the last took at most 5 %
    of the time since it ended, and after the last epoch), the validation loss improving
    every epoch so that best.keras is written too."""
    import keras

    from biomodels.callbacks import EpochCheckpoints

    class TimedCheckpoints(EpochCheckpoints):
        seconds = 0.0

        def on_epoch_end(self, epoch, logs=None):
            start = time.perf_counter()
            super().on_epoch_end(epoch, {"val_loss": 1.0 / (epoch + 1)})
            self.seconds += time.perf_counter() - start

        def on_train_end(self, logs=None):
            start = time.perf_counter()
            super().on_train_end(logs)
            self.seconds += time.perf_counter() - start

    class EpochTimes(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    with tempfile.TemporaryDirectory() as model_dir:
        saves, epoch_times = TimedCheckpoints(model_dir, monitor="val_loss"), EpochTimes()
        data = dataset_lib.training_dataset(task, 0, steps_per_epoch=steps)
        model.fit(data, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[epoch_times, saves])
    return saves.seconds / epochs, float(np.median(epoch_times.times[1:])), saves.saves


def cellpose_step_seconds(config, steps):
    nbase = ",".join(map(str, (len(config.channels),) + tuple(config.nbase)))
    out = reference_env.run_script("cpnet_train_step.py", nbase, config.batch_size, config.crop_size, steps)
    return json.loads(out.strip().splitlines()[-1])["step_seconds"]


def step_rows(task, config, args):
    """The rows of the step through the command, in fit, bare, with Keras's batch norm
    and (cellular) Cellpose's."""
    data_dir = prepare.synthetic_dataset(task, config)
    bound = task.bind(config, manifest=manifest_lib.read(data_dir, task))
    bare, model, batches = representative_bare_step_seconds(bound, args.steps)
    in_fit = in_fit_step_seconds(bound, model, max(batches, 3))
    keras_batch_norm = keras_batch_norm_step_seconds(bound, model, batches)
    extra = args.extra or max(8, math.ceil(60.0 / bare))
    del model
    short = command_seconds(task.name, args.preset, data_dir, args.short, args.repeats)
    long = command_seconds(task.name, args.preset, data_dir, args.short + extra, args.repeats)
    command = (long - short) / extra
    print(f"command runs of {args.short} and {args.short + extra} steps: {short:.1f} s and {long:.1f} s")
    rows = [("step through the train command", command, "bare compiled step", bare, command / bare, "≤ 1.1"),
            ("step in fit on the pipeline", in_fit, "bare compiled step", bare, in_fit / bare, "")]
    if keras_batch_norm is not None:
        rows.append(("bare step, fused batch norm", bare, "bare step, Keras's batch norm", keras_batch_norm,
                     keras_batch_norm / bare, "> 1: fused faster"))
    if task.name == "cellular":
        cellpose = cellpose_step_seconds(config, args.steps)
        rows.append(("step through the train command", command, "Cellpose 3.1.1.2 CPnet step", cellpose,
                     cellpose / command, "≥ 1.5 (faster)" if args.preset == "paper" else ""))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cellular")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--short", type=int, default=2)
    parser.add_argument("--extra", type=int, default=0, help="default: about 60 s of steps, at least 8")
    parser.add_argument("--repeats", type=int, default=2, help="command runs of each length (the fastest counts)")
    parser.add_argument("--checkpoints_only", action="store_true", help="measure the quick preset's checkpoints alone")
    args = parser.parse_args()
    task = tasks.get(args.task)
    config = config_lib.resolve(task, args.preset)
    rows = [] if args.checkpoints_only else step_rows(task, config, args)
    quick = config_lib.resolve(task, "quick")
    quick_task = task.bind(quick, manifest=manifest_lib.read(prepare.synthetic_dataset(task, quick), task))
    quick_bare, quick_model, _ = representative_bare_step_seconds(quick_task, args.steps)
    quick_steps = quick.steps_per_epoch or math.ceil(quick_task.manifest.count("train") / quick.batch_size)
    epochs = min(quick.epochs, max(5, math.ceil(90.0 / (quick_steps * quick_bare))))
    saves, epoch, saves_made = checkpoint_cost(quick_task, quick_model, quick_steps, epochs)
    rows.append((f"checkpoints an epoch (quick; {saves_made} saves in {epochs} epochs)", saves,
                 f"quick epoch ({quick_steps} steps)", epoch, saves / epoch, "≤ 0.05"))
    print(f"{os.cpu_count()} CPU cores; task {task.name}, preset {args.preset} (batch {config.batch_size})")
    width = max(len(row[0]) for row in rows)
    for name, ours, reference_name, reference, ratio, target in rows:
        print(f"{name:<{width}}  {ours:9.4f} s   {reference_name:<30} {reference:9.4f} s   ratio {ratio:6.3f}"
              + (f"   target {target}" if target else ""))


if __name__ == "__main__":
    main()
