"""Image to masks, biomodels against Cellpose 3.1.1.2's own `CellposeModel.eval` on the
same network and the same images: a cellular run of the paper's widths (32-256, two input
channels, `gray`) is written as a CPnet state dict (`CellposeNet.cellpose_state`), which
Cellpose loads in its reference environment (reference_env.py). Both segment a 512×512
and a 2048×2048 synthetic gray image (the 2048² one a mosaic of 512² ones) at the
network's own diameter (no rescaling; 200 flow steps), flow threshold 0.4, cell
probability threshold 0, min size 15: biomodels as `predict --masks_in=python` does
(normalisation, the network in its default tiles (image_maps.network_tiles: the whole
image up to about 2.3 million pixels), numba dynamics), Cellpose with its defaults (224²
tiles overlapping by 10 %); both timed from the image as read to the masks. Prints the
best of --repeats seconds of each, their ratio (target: biomodels ≥ 3× faster, issue 27)
and AP@0.5 between the two mask images (target ≥ 0.95).

    python benchmarks/cellular_predict.py --model_dir=RUN [--repeats=2]

The run docs/benchmarks.md's figures came from (5 min 44 s here; AP@0.5 0.93 on its test split):

    python -m biomodels.train --task=cellular --model_dir=RUN --set nbase=32,64,128,256 \\
        --set gray=true --set crop_size=112 --set epochs=8 --set steps_per_epoch=25
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from biomodels import cli  # noqa: E402

tf = cli.import_tensorflow()

import numpy as np  # noqa: E402

from biomodels import tasks  # noqa: E402
from biomodels.ops.matching import average_precision  # noqa: E402
from biomodels.pipelines.synthetic.cellular import CELLS_PER_PIXEL, cell_labels, render  # noqa: E402
from biomodels.config import read_calibration  # noqa: E402
from biomodels.predictors import KerasPredictor  # noqa: E402
from biomodels.runs import load_trained_model, run_config  # noqa: E402
from biomodels.tasks.cellular import data  # noqa: E402
from biomodels.tasks.base import TILING_DEFAULTS  # noqa: E402
from biomodels.tasks.cellular.config import CellularConfig, mask_thresholds  # noqa: E402
from biomodels.tasks.cellular.inference import segment  # noqa: E402
import reference_env  # noqa: E402
from timing import best_time  # noqa: E402

THRESHOLDS = mask_thresholds(CellularConfig())  # Cellpose's defaults


def gray_image(seed, size=512):
    """A synthetic cell image made gray as Cellpose's channels=[0, 0] does (channel mean)."""
    rng = np.random.default_rng(seed)
    labels, centres, _ = cell_labels(rng, (size, size), round(CELLS_PER_PIXEL * size * size))
    return render(rng, labels, centres, set()).mean(axis=-1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    task = tasks.get("cellular")
    model = load_trained_model(args.model_dir)
    predictor = KerasPredictor(task, model, run_config(task, args.model_dir), read_calibration(task, args.model_dir))
    if model.nbase != (32, 64, 128, 256) or model.nchan != 2:
        sys.exit(f"{args.model_dir}: Cellpose 3 builds CPnets of widths 32-256 on 2 channels; this run's network has "
                 f"widths {list(model.nbase)} on {model.nchan}")
    images = {"512x512": gray_image(0), "2048x2048": np.block([[gray_image(4 * row + column) for column in range(4)]
                                                               for row in range(4)])}
    network = lambda tiles: predictor("normalised", images=tiles)  # noqa: E731  what predict runs
    with tempfile.TemporaryDirectory() as folder:
        np.savez(os.path.join(folder, "state.npz"), **model.cellpose_state())
        ours = {}
        for name, image in images.items():
            np.save(os.path.join(folder, f"image_{name}.npy"), image.astype(np.float32))
            raw = np.stack([image, np.zeros_like(image)], axis=-1).astype(np.float32)
            ours[name] = best_time(lambda: segment(network, data.normalise(raw), 1.0, THRESHOLDS, tile=None,
                                                   **TILING_DEFAULTS)[0], args.repeats)
        theirs = json.loads(reference_env.run_script("cellpose_eval.py", folder, args.repeats).strip().splitlines()[-1])
        their_masks = {name: np.load(os.path.join(folder, f"cellpose_masks_{name}.npy")) for name in images}
    print(f"image -> masks, network widths 32-256 of {args.model_dir}; {os.cpu_count()} CPU cores, best of {args.repeats}")
    for name in images:
        seconds, masks = ours[name]
        ap = float(average_precision(their_masks[name].astype(np.int64), masks.astype(np.int64), (0.5,))[0][0])
        ratio = theirs[name] / seconds
        print(f"  {name:<10} biomodels {seconds:7.2f} s   cellpose eval {theirs[name]:7.2f} s   ratio {ratio:5.2f} "
              f"(target ≥ 3: {ratio / 3:.2f})   AP@0.5 between the masks {ap:.4f} (target ≥ 0.95: {ap / 0.95:.3f}; "
              f"{masks.max()} vs {their_masks[name].max()} cells)")


if __name__ == "__main__":
    main()
