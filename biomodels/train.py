"""Train a task's model, then evaluate it on the test split and export it.

    python -m biomodels.train --task=cryoet [--data_dir=DIR] [--model_dir=DIR] [--preset=quick|paper] ...

Without --data_dir the task's built-in synthetic data set is prepared once and reused.
Without --model_dir the run goes into runs/<task>/<timestamp>, unless an unfinished run
of the same task, preset, configuration, data and seed is there: then the same command
continues it from its last epoch checkpoint, to the weights an uninterrupted run would
reach (checkpoints are saved as often as a save costs at most 5 % of the run; with
--checkpoint_every=N every N epochs).
The run directory holds config.json, TensorBoard logs, best.keras and last.keras, the
epoch checkpoints in backup/, metrics_test.json, log.txt, the SavedModel in export/ and,
once all of that is written, finished.json.

The module is also callable, so that `biomodels.train(task, ...)` (Python) and
`python -m biomodels.train` (the command) share one name: see `biomodels.study.train`.
"""

import os
import sys
import types

from biomodels import config as config_lib
from biomodels import run_state, runtime
from biomodels.pipelines import manifest as manifest_lib
from biomodels.training import RunOptions, default_model_dir, run_record, train


def main(argv):
    from biomodels import cli, prepare, tasks
    from biomodels.report import say

    flags = cli.FLAGS
    task = tasks.get(flags.task)
    overrides = list(flags.set)
    for name in ("epochs", "steps_per_epoch", "batch_size"):
        if flags[name].value is not None:
            overrides.append(f"{name}={flags[name].value}")
    config = config_lib.resolve(task, flags.preset, overrides)
    if flags.data_dir:
        manifest_lib.read(flags.data_dir, task)  # a clear error before the run directory exists
    if flags.init_from:
        # without TensorFlow ops: a multi-worker strategy must come first
        task.bind(config).check_initial_weights(flags.init_from)
    data_dir = flags.data_dir or prepare.synthetic_dataset(task, config, seed=flags.seed)
    model_dir, lock = flags.model_dir, None
    if not model_dir:
        identity = run_state.run_identity(run_record(task, flags.preset, config, data_dir, flags.seed))
        model_dir, lock = run_state.find_unfinished(os.path.join("runs", task.name), identity)
        if model_dir:
            say(f"Continuing the unfinished run in {model_dir} (same task, preset, configuration, data and seed)")
        else:
            model_dir = default_model_dir(task)
    os.makedirs(model_dir, exist_ok=True)
    cli.log_to_file(os.path.join(model_dir, "log.txt"))
    options = RunOptions(
        seed=flags.seed, deterministic=flags.deterministic, precision=flags.precision, strategy=flags.strategy,
        jit_compile=flags.jit_compile, init_from=flags.init_from or "",
        cache_bytes=None if flags.cache_mb is None else int(flags.cache_mb * 1e6),
        checkpoint_every=flags.checkpoint_every,
    )
    train(task, config, data_dir, model_dir, options, preset=flags.preset, lock=lock)


def define_flags():
    from absl import flags

    from biomodels import tasks

    flags.DEFINE_string("task", None, "Task name: " + ", ".join(tasks.names()))
    flags.DEFINE_string("data_dir", None, "Prepared data set (default: the built-in synthetic one).")
    flags.DEFINE_string("model_dir", None, "Run directory (default: runs/<task>/<timestamp>).")
    flags.DEFINE_string("preset", "quick", "quick (minutes on a CPU) or paper (the study's settings).")
    flags.DEFINE_integer("epochs", None, "Override the preset's epochs.")
    flags.DEFINE_integer("steps_per_epoch", None, "Override the steps per epoch (0: one pass over train).")
    flags.DEFINE_integer("batch_size", None, "Override the global batch size.")
    flags.DEFINE_enum("precision", "auto", list(runtime.PRECISIONS), "Compute precision; auto: mixed_float16 on GPU, float32 on CPU.")
    flags.DEFINE_enum("strategy", "auto", list(runtime.STRATEGIES), "Distribution strategy; multi_worker reads TF_CONFIG.")
    flags.DEFINE_multi_string("set", [], "Override a configuration value: --set key=value.")
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA compilation; auto: what measured faster for the task.")
    flags.DEFINE_integer("seed", 0, "Seed of weights, data order and augmentation.")
    flags.DEFINE_bool("deterministic", False, "Deterministic kernels: identical runs on CPU.")
    flags.DEFINE_float("cache_mb", None, "Cache the training split in memory up to this size (MB; default: a quarter "
                       "of the machine's memory); a larger split is streamed from its shards.", lower_bound=0)
    flags.DEFINE_integer("checkpoint_every", 0, "Save the epoch checkpoint every N epochs; 0: whenever the last save took "
                         "at most 5 % of the training time since it ended (a killed run retrains the epochs since).",
                         lower_bound=0)
    flags.DEFINE_string("init_from", None, "Start from the weights of a model_dir or .keras file (cellular: also a Cellpose PyTorch checkpoint).")
    flags.mark_flag_as_required("task")


class _CallableModule(types.ModuleType):
    """This module, callable as `biomodels.train(task, data_dir=None, preset="quick", **settings)`."""

    def __call__(self, task, data_dir=None, preset="quick", **settings):
        from biomodels.study import train as train_in_python

        return train_in_python(task, data_dir, preset, **settings)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":
    from biomodels import cli

    cli.import_tensorflow()
    define_flags()
    cli.run(main)
