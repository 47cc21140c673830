"""Run a trained or exported model over raw files and write the results beside names
that say what they are.

    python -m biomodels.predict --task=cryoet --model=PATH --input=FILE_OR_DIR --output=DIR

--model takes a training run's model_dir or an exported SavedModel directory.
"""

import os


def main(argv):
    from biomodels import cli, tasks
    from biomodels.export.savedmodel import load_predictor

    flags = cli.FLAGS
    task = tasks.get(flags.task)
    if not os.path.exists(flags.input):
        from biomodels.errors import InputError

        raise InputError(flags.input, "no such file or directory")
    predictor = load_predictor(task, flags.model)
    os.makedirs(flags.output, exist_ok=True)
    options = {"probabilities": flags.probabilities, "tile": flags.tile, "overlap": flags.overlap, "batch_size": flags.batch_size,
               "target_recall": flags.target_recall, "threshold": flags.threshold,
               "voxel_size": parse_voxel_size(flags.voxel_size), "mode": flags.mode, "cells": flags.cells, "steps": flags.steps,
               "diameter": flags.diameter, "channels": flags.channels, "flow_threshold": flags.flow_threshold,
               "cellprob_threshold": flags.cellprob_threshold, "min_size": flags.min_size}
    written = task.predict_files(predictor, flags.input, flags.output, options)
    cli.say(f"Wrote {len(written)} file(s) to {flags.output}")


def parse_voxel_size(text):
    """(x, y, z) in µm from 'x,y,z' or one number for all three; None for None."""
    if not text:
        return None
    from biomodels.errors import ConfigError

    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) <= 0:
        raise ConfigError(f"--voxel_size={text}: expected x,y,z in µm (or one number), all positive")
    return values


def define_flags():
    from absl import flags

    from biomodels import tasks

    flags.DEFINE_string("task", None, "Task name: " + ", ".join(tasks.names()))
    flags.DEFINE_string("model", None, "A model_dir of biomodels.train, an exported SavedModel directory, or a TF Serving address (http://host:8501/v1/models/NAME, grpc://host:8500).")
    flags.DEFINE_string("input", None, "Input file or folder.")
    flags.DEFINE_string("output", None, "Output folder.")
    flags.DEFINE_bool("probabilities", False, "Also write per-class probability maps.")
    flags.DEFINE_integer("tile", None, "Tile size for tiled inference (default: the training tile size, else 512).", lower_bound=16)
    flags.DEFINE_integer("overlap", 64, "Overlap between tiles, blended.", lower_bound=0)
    flags.DEFINE_integer("batch_size", 4, "Tiles per batch.", lower_bound=1)
    flags.DEFINE_float("target_recall", None, "ccp: flag for review the tracks above the threshold that keeps this recall on the validation split (default: the run's target_recall).", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_string("voxel_size", None, "deepis: voxel size x,y,z in µm (or one number) when the files do not say; puts the report in µm³ and µm².")
    flags.DEFINE_string("mode", None, "lch: embed (embeddings.csv; the default), insilico (cells decoded along the classifier direction) or interpolate (between two --cells).")
    flags.DEFINE_list("cells", None, "lch: crop file names for --mode=insilico (default: the two most confidently low and high) or the two for --mode=interpolate.")
    flags.DEFINE_integer("steps", 9, "lch: decoded images per in-silico path or interpolation.", lower_bound=2)
    flags.DEFINE_float("threshold", None, "ccp: flag the tracks with a probability at or above this instead.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("diameter", None, "cellular: mean cell diameter in pixels; images are rescaled so cells match the network's (default: the training cells' mean).", lower_bound=1.0)
    flags.DEFINE_string("channels", None, "cellular: cytoplasm and nucleus channel indices from 0, such as 0,1 or 0 (default: the training channels).")
    define_mask_flags(flags)
    flags.mark_flags_as_required(["task", "model", "input", "output"])


def define_mask_flags(flags):
    """cellular: the thresholds of masks_from_flows, shared by predict and evaluate."""
    flags.DEFINE_float("flow_threshold", None, "cellular: drop masks whose flow error exceeds this (default: the run's, 0.4).", lower_bound=0.0)
    flags.DEFINE_float("cellprob_threshold", None, "cellular: pixels with a cell-probability logit above this are followed (default: the run's, 0).")
    flags.DEFINE_integer("min_size", None, "cellular: drop masks smaller than this many pixels (default: the run's, 15).", lower_bound=0)


if __name__ == "__main__":
    from biomodels import cli

    cli.import_tensorflow()
    define_flags()
    cli.run(main)
