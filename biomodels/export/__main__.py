"""Export a training run as a versioned SavedModel for TensorFlow Serving.

    python -m biomodels.export --task=cryoet --model_dir=DIR --export_dir=DIR [--version=N] [--warmup=N] [--overwrite] [--bioimageio]

Writes export_dir/<task>/<version>/ (the next free version number by default) with
warmup requests in assets.extra/, and regenerates export_dir/models.config and
export_dir/batching.config for every task exported there.
"""

import os


def main(argv):
    from biomodels import cli, report, tasks
    from biomodels.export.serving import export_run
    from biomodels.runs import run_config

    flags = cli.FLAGS
    task = tasks.get(flags.task)
    config = run_config(task, flags.model_dir)
    if flags.bioimageio:
        task.bind(config).bioimageio_description()  # a task without an image model says so before anything is written
    path = export_run(task, flags.model_dir, flags.export_dir, version=flags.version, warmup=flags.warmup,
                      overwrite=flags.overwrite)
    report.say(f"Exported {task.name} to {path}; server configuration in {flags.export_dir}")
    if flags.bioimageio:
        from biomodels.export.bioimageio import write_package

        package = write_package(task, path, config, f"{path}.bioimageio.zip", training_pixel_size(flags.model_dir),
                                flags.license)
        report.say(f"Wrote the bioimage.io package {package}")


def training_pixel_size(model_dir):
    """The median pixel size (x) of the run's training sources, when their files had one."""
    import numpy as np

    from biomodels import config as config_lib
    from biomodels.pipelines import manifest as manifest_lib

    data_dir = config_lib.read_run_config(model_dir).get("data_dir")
    if not data_dir or not os.path.isfile(os.path.join(data_dir, manifest_lib.MANIFEST)):
        return None
    sizes = [source.details["voxel_size"][0] for source in manifest_lib.read(data_dir).sources
             if source.details.get("voxel_size")]
    return float(np.median(sizes)) if sizes else None


def define_flags():
    from absl import flags

    from biomodels import tasks

    flags.DEFINE_string("task", None, "Task name: " + ", ".join(tasks.names()))
    flags.DEFINE_string("model_dir", None, "Run directory written by biomodels.train.")
    flags.DEFINE_string("export_dir", None, "Root of the TF Serving model tree.")
    flags.DEFINE_integer("version", None, "Version number (default: next free).", lower_bound=1)
    flags.DEFINE_integer("warmup", None, "Warmup requests to record (0 for none, at most 1000; default: each of the "
                         "task's representative requests once, which covers every signature).", lower_bound=0,
                         upper_bound=1000)
    flags.DEFINE_bool("overwrite", False, "Replace the version if it exists.")
    flags.DEFINE_bool("bioimageio", False, "Also write export_dir/<task>/<version>.bioimageio.zip for the bioimage.io model zoo.")
    flags.DEFINE_string("license", "CC-BY-4.0", "SPDX licence of the bioimage.io package.")
    flags.mark_flags_as_required(["task", "model_dir", "export_dir"])


if __name__ == "__main__":
    from biomodels import cli

    cli.import_tensorflow()
    define_flags()
    cli.run(main)
