"""biomodels against Cellpose 3.1.1.2 itself (run in the reference environment, see
reference_env.py), on the CPU of this machine:

1. masks -> flows on two 512×512 label images, 55 large touching cells (radius 22-38
   px) and over 100 small nuclei (about 17 px across, touching in places): seconds of
   biomodels.ops.flows.masks_to_flows against cellpose.dynamics.masks_to_flows (target:
   3× faster), and the mean cosine similarity of the two flow fields inside cells (≥ 0.95);
2. flows -> masks on the same images' flows (cell probability +5 inside cells, -5
   outside): masks_from_flows against cellpose.dynamics.compute_masks (target: 2×
   faster), and AP@0.5 of our masks against Cellpose's (≥ 0.95);
3. one training step of CellposeNet (Keras, compiled fit step) against Cellpose's CPnet
   (PyTorch), same widths, batch and crop, Cellpose's loss, SGD with momentum.

    python benchmarks/cellular.py [--repeats=3] [--batch=8] [--crop=224] [--steps=5 (0: no training step)]

Each line prints our figure, Cellpose's, and their ratio (> 1: we are faster).
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from biomodels import cli  # noqa: E402

tf = cli.import_tensorflow()

import numpy as np  # noqa: E402

import reference_env  # noqa: E402
from timing import best_time  # noqa: E402
from biomodels.ops.flows import masks_from_flows, masks_to_flows  # noqa: E402
from biomodels.ops.matching import average_precision  # noqa: E402
from biomodels.pipelines.synthetic.cellular import cell_labels  # noqa: E402

NBASE = (32, 64, 128, 256)


def keras_train_step_seconds(batch, crop, steps):
    import keras

    from biomodels.models import CellposeLoss, CellposeNet

    keras.utils.set_random_seed(0)
    model = CellposeNet(nchan=2, nbase=NBASE)
    model.compile(loss=CellposeLoss(), optimizer=keras.optimizers.SGD(0.01, momentum=0.9, weight_decay=1e-5))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch, crop, crop, 2)).astype(np.float32)
    targets = np.concatenate([rng.normal(size=(batch, crop, crop, 2)), rng.random((batch, crop, crop, 1)) > 0.5,
                              np.ones((batch, crop, crop, 1))], axis=-1).astype(np.float32)
    model.train_on_batch(images, targets)  # builds the step
    model.train_on_batch(images, targets)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(images, targets)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def report(name, ours, theirs, unit="s", better="lower"):
    ratio = theirs / ours if better == "lower" else ours / theirs
    print(f"{name:<34} biomodels {ours:9.4f} {unit}   cellpose {theirs:9.4f} {unit}   ratio {ratio:6.2f}")
    return ratio


def compare_dynamics(labels, repeats):
    """masks_to_flows and masks_from_flows against Cellpose's on one label image."""
    with tempfile.TemporaryDirectory() as folder:
        flow_seconds, flows = best_time(lambda: masks_to_flows(labels), repeats)
        cellprob = np.where(labels > 0, 5.0, -5.0).astype(np.float32)
        mask_seconds, masks = best_time(lambda: masks_from_flows(flows, cellprob), repeats)
        for name, array in (("labels", labels), ("flows", flows), ("cellprob", cellprob)):
            np.save(os.path.join(folder, f"{name}.npy"), array)
        theirs = json.loads(reference_env.run_script("cellpose_dynamics.py", folder, repeats).strip().splitlines()[-1])
        cellpose_flows = np.load(os.path.join(folder, "cellpose_flows.npy"))
        cellpose_masks = np.load(os.path.join(folder, "cellpose_masks.npy"))
    inside = labels > 0
    cosine = float(np.mean(np.sum(flows[:, inside] * cellpose_flows[:, inside], axis=0) / np.maximum(
        np.linalg.norm(flows[:, inside], axis=0) * np.linalg.norm(cellpose_flows[:, inside], axis=0), 1e-12)))
    report("  masks_to_flows (3× faster)", flow_seconds, theirs["masks_to_flows"])
    print(f"{'    flow agreement (mean cosine)':<34} {cosine:.4f}   target 0.95   ratio {cosine / 0.95:.3f}")
    report("  masks_from_flows (2× faster)", mask_seconds, theirs["compute_masks"])
    ap = float(average_precision(cellpose_masks.astype(np.int64), masks.astype(np.int64), (0.5,))[0][0])
    print(f"{'    AP@0.5 against cellpose masks':<34} {ap:.4f}   target 0.95   ratio {ap / 0.95:.3f}   "
          f"({masks.max()} vs {cellpose_masks.max()} masks; truth {labels.max()})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores")
    images = {"55 large cells": cell_labels(np.random.default_rng(0), (512, 512), 55, radius_range=(22.0, 38.0))[0],
              "small nuclei": cell_labels(np.random.default_rng(1), (512, 512), 160, radius_range=(7.5, 9.5))[0]}
    for kind, labels in images.items():
        print(f"512×512 label image, {kind}: {labels.max()} cells")
        compare_dynamics(labels, args.repeats)
    if not args.steps:  # --steps=0: the dynamics only
        return
    ours = keras_train_step_seconds(args.batch, args.crop, args.steps)
    nbase = ",".join(map(str, (2,) + NBASE))
    cellpose_step = json.loads(reference_env.run_script("cpnet_train_step.py", nbase, args.batch, args.crop,
                                                        args.steps).strip().splitlines()[-1])["step_seconds"]
    report(f"training step (batch {args.batch}, {args.crop}²)", ours, cellpose_step)


if __name__ == "__main__":
    main()
