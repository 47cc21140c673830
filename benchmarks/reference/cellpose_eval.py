"""In the reference environment: segment images with Cellpose 3.1.1.2's own
`CellposeModel.eval`, using a CPnet state dict written by biomodels, and time it.

usage: cellpose_eval.py DIR REPEATS
DIR holds state.npz (CPnet state dict arrays in PyTorch layouts) and image_NAME.npy (2-D
images); writes cpnet.pth, cellpose_masks_NAME.npy for each image and prints a JSON
line {NAME: best seconds}. The call is Cellpose's defaults with channels=[0, 0] (one gray
channel and a zero one) and diameter = the model's diam_mean (no rescaling, so 200 flow
steps), flow_threshold 0.4, cellprob_threshold 0, min_size 15; the first call is not
timed (it compiles numba's kernels).
"""

import glob
import json
import os
import sys

import numpy as np
import torch
from cellpose import models

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cpnet_state import write_checkpoint  # noqa: E402
from timing import best_time  # noqa: E402


def main(folder, repeats):
    torch.set_num_threads(os.cpu_count())
    model = models.CellposeModel(gpu=False, pretrained_model=write_checkpoint(folder))
    diameter = float(model.diam_mean)
    seconds = {}
    for image_path in sorted(glob.glob(os.path.join(folder, "image_*.npy"))):
        name = os.path.basename(image_path)[len("image_"):-len(".npy")]
        image = np.load(image_path)
        seconds[name], (masks, *_) = best_time(
            lambda: model.eval(image, channels=[0, 0], diameter=diameter, flow_threshold=0.4, cellprob_threshold=0.0,
                               min_size=15), int(repeats))
        np.save(os.path.join(folder, f"cellpose_masks_{name}.npy"), np.asarray(masks))
    print(json.dumps(seconds))


if __name__ == "__main__":
    main(*sys.argv[1:])
