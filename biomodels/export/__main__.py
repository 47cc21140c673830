"""Export a training run as a versioned SavedModel for TensorFlow Serving.

    python -m biomodels.export --task=cryoet --model_dir=DIR --export_dir=DIR [--version=N]

Writes export_dir/<task>/<version>/ (the next free version number by default).
"""

import os


def next_version(task_dir):
    versions = [int(name) for name in os.listdir(task_dir) if name.isdigit()] if os.path.isdir(task_dir) else []
    return max(versions, default=0) + 1


def main(argv):
    from biomodels import cli, tasks
    from biomodels.export.savedmodel import export_saved_model, load_trained_model, run_config

    flags = cli.FLAGS
    task = tasks.get(flags.task)
    config = run_config(task, flags.model_dir)
    model = load_trained_model(flags.model_dir)
    task_dir = os.path.join(flags.export_dir, task.name)
    version = flags.version or next_version(task_dir)
    path = export_saved_model(task, model, config, os.path.join(task_dir, str(version)))
    cli.say(f"Exported {task.name} version {version} to {path}")


def define_flags():
    from absl import flags

    from biomodels import tasks

    flags.DEFINE_string("task", None, "Task name: " + ", ".join(tasks.names()))
    flags.DEFINE_string("model_dir", None, "Run directory written by biomodels.train.")
    flags.DEFINE_string("export_dir", None, "Root of the TF Serving model tree.")
    flags.DEFINE_integer("version", None, "Version number (default: next free).", lower_bound=1)
    flags.mark_flags_as_required(["task", "model_dir", "export_dir"])


if __name__ == "__main__":
    from biomodels import cli

    cli.import_tensorflow()
    define_flags()
    cli.run(main)
