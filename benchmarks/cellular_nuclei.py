"""Training on a handful of real images, as a Cellpose user fine-tunes: biomodels' paper
preset through the `train` command against Cellpose 3.1.1.2's `train_seg`, from scratch,
on the same tiles of real fluorescent nuclei.

    python benchmarks/cellular_nuclei.py [--epochs=100] [--seeds=0] [--keep=DIR]

The image is StarDist's 2-D example (a 512×512 fluorescence image of nuclei from the
2018 Data Science Bowl, with its instance masks), which ships inside the `stardist`
wheel on the package registry: the wheel is downloaded once (pip download, no
dependencies) and the two TIFFs are read from it. It is cut into sixteen 128² tiles:
ten to train, two to validate, four held out. Both sides train for --epochs epochs of
one pass over the ten training tiles (Cellpose's epochs), SGD at 0.2 with Cellpose's
warm-up and, as train_seg at 100 epochs or fewer, no final halvings, batch 8 of 224²
crops, channels [0, 0]; both then segment the four held-out tiles at the training
masks' mean diameter. Prints the training wall times (biomodels: the whole `train`
command, with its validation, evaluation and export; Cellpose: `train_seg` alone) and
AP@0.5 of each side's masks against the truth, each as a ratio. With --seeds=0,1,2 both
sides train once per seed (initial weights, order, augmentation): 41 held-out nuclei
make one nucleus found or missed worth about 0.02 of AP, so one seed is a coarse sample;
the ratios are then of the seeds' means.

Targets (issue 27): biomodels' training time ≤ Cellpose's, at AP@0.5 ≥ 0.95 × Cellpose's.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tifffile  # noqa: E402

import reference_env  # noqa: E402
from biomodels.ops.matching import average_precision  # noqa: E402
from biomodels.prepare import cache_root  # noqa: E402

STARDIST_WHEEL = "stardist==0.9.2"
TILE = 128
SPLITS = {"train": range(0, 10), "val": range(10, 12), "test": range(12, 16)}


def nuclei_image():
    """(image uint16 [512, 512], instance labels) of StarDist's bundled 2-D example."""
    folder = os.path.join(cache_root(), "benchmarks", "stardist-wheel")
    wheels = glob.glob(os.path.join(folder, "stardist-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", folder,
                        STARDIST_WHEEL], check=True)
        wheels = glob.glob(os.path.join(folder, "stardist-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        read = lambda name: tifffile.imread(wheel.open(f"stardist/data/images/{name}"))  # noqa: E731
        return read("img2d.tif"), read("mask2d.tif")


def write_tiles(image, labels, folder):
    """The sixteen tiles as a Cellpose training folder per split (NAME.tif, NAME_masks.tif)
    and, for biomodels' prepare, all in one folder; returns {split: [names]}."""
    names = {split: [] for split in SPLITS}
    for index in range(16):
        row, column = divmod(index, 4)
        window = np.s_[row * TILE:(row + 1) * TILE, column * TILE:(column + 1) * TILE]
        tile_labels = relabel(labels[window])
        split = next(split for split, indices in SPLITS.items() if index in indices)
        name = f"{split}_{index:02d}"
        names[split].append(name)
        for target in (os.path.join(folder, "all"), os.path.join(folder, "cellpose", split)):
            os.makedirs(target, exist_ok=True)
            tifffile.imwrite(os.path.join(target, f"{name}.tif"), image[window])
            tifffile.imwrite(os.path.join(target, f"{name}_masks.tif"), tile_labels.astype(np.uint16))
    return names


def relabel(labels):
    """Labels 1..n in order, for a tile cut out of a labelled image."""
    values = np.unique(labels[labels > 0])
    lookup = np.zeros(int(labels.max()) + 1, np.int32)
    lookup[values] = np.arange(1, len(values) + 1)
    return lookup[labels]


def run(command, **kwargs):
    result = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, **kwargs)
    if result.returncode:
        sys.exit(f"{' '.join(command[:2])} failed:\n{result.stderr[-3000:]}")
    return result


def train_biomodels(folder, epochs, seed):
    """(training seconds of the whole command, {test name: masks})."""
    data_dir = os.path.join(folder, "prepared")
    model_dir, masks_dir = (os.path.join(folder, f"{name}-seed{seed}") for name in ("run", "masks"))
    sets = ["--set=val_pattern=^val_", "--set=test_pattern=^test_"]
    if not os.path.isdir(data_dir):
        run(["biomodels.prepare", "--task=cellular", "--preset=paper", f"--input={os.path.join(folder, 'all')}",
             f"--output_dir={data_dir}", *sets])
    start = time.perf_counter()
    run(["biomodels.train", "--task=cellular", "--preset=paper", f"--epochs={epochs}", f"--data_dir={data_dir}",
         f"--model_dir={model_dir}", f"--seed={seed}", *sets])
    seconds = time.perf_counter() - start
    test_images = sorted(glob.glob(os.path.join(folder, "cellpose", "test", "test_??.tif")))
    inputs = os.path.join(folder, "test_images")
    if not os.path.isdir(inputs):
        os.makedirs(inputs)
        for path in test_images:
            os.link(path, os.path.join(inputs, os.path.basename(path)))
    run(["biomodels.predict", "--task=cellular", f"--model={model_dir}", f"--input={inputs}",
         f"--output={masks_dir}"])
    return seconds, {os.path.basename(path)[:-4]: tifffile.imread(os.path.join(masks_dir, os.path.basename(path)[:-4]
                                                                               + "_cp_masks.tif"))
                     for path in test_images}


def train_cellpose(folder, epochs, seed):
    out = os.path.join(folder, f"cellpose_masks-seed{seed}")
    line = reference_env.run_script("cellpose_train.py", os.path.join(folder, "cellpose"), epochs, out, seed,
                                    timeout=4 * 3600)
    result = json.loads(line.strip().splitlines()[-1])
    return result["train_seconds"], {os.path.basename(path)[:-10]: np.load(path)
                                     for path in glob.glob(os.path.join(out, "*_masks.npy"))}


def mean_ap(masks, truth):
    return float(np.mean([average_precision(truth[name].astype(np.int64), masks[name].astype(np.int64), (0.5,))[0][0]
                          for name in truth]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, each a training of both sides")
    parser.add_argument("--keep", help="keep the tiles, runs and masks here instead of a temporary folder")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    image, labels = nuclei_image()
    results = []  # (seed, our seconds, our AP, Cellpose's seconds, Cellpose's AP)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or scratch
        names = write_tiles(image, labels, folder)
        truth = {name: tifffile.imread(os.path.join(folder, "cellpose", "test", f"{name}_masks.tif"))
                 for name in names["test"]}
        for seed in seeds:
            ours_seconds, ours = train_biomodels(folder, args.epochs, seed)
            theirs_seconds, theirs = train_cellpose(folder, args.epochs, seed)
            results.append((seed, ours_seconds, mean_ap(ours, truth), theirs_seconds, mean_ap(theirs, truth)))
            print(f"seed {seed}: biomodels {ours_seconds:.1f} s, AP@0.5 {results[-1][2]:.4f}; "
                  f"Cellpose {theirs_seconds:.1f} s, AP@0.5 {results[-1][4]:.4f}", flush=True)
    ours_seconds, ours_ap, theirs_seconds, theirs_ap = np.mean([row[1:] for row in results], axis=0)
    over = f"mean of {len(seeds)} seeds" if len(seeds) > 1 else f"seed {seeds[0]}"
    print(f"{os.cpu_count()} CPU cores; StarDist's 2-D nuclei image, 16 tiles of {TILE}²: 10 train, 2 val, 4 test; "
          f"{args.epochs} epochs of one pass; {over}")
    print(f"training time   biomodels {ours_seconds:8.1f} s (the train command)   Cellpose 3.1.1.2 {theirs_seconds:8.1f} s "
          f"(train_seg)   ratio {theirs_seconds / ours_seconds:.3f} (≥ 1: not slower)")
    print(f"AP@0.5, 4 tiles biomodels {ours_ap:8.4f}   Cellpose {theirs_ap:8.4f}   ratio {ours_ap / max(theirs_ap, 1e-9):.3f} "
          f"(target ≥ 0.95)")


if __name__ == "__main__":
    main()
