"""In the reference environment: Cellpose 3.1.1.2's own size estimation (`SizeModel.eval`)
with a CPnet checkpoint and a size model written here.

usage: size_estimate.py DIR SEED [REPEATS]
DIR holds cpnet.pth (cpnet_outputs.py writes one; made from state.npz when missing, see
cpnet_state.py) and image_NAME.npy (2-D images).
Writes size_cpnet.npy, a size model as Cellpose saves one (np.save of a dict: A, smean,
ymean, diam_mean; random, seeded, of the network's style length),
and prints a JSON line {NAME: [diameter, diameter from the style alone]} of
`SizeModel.eval(image, channels=[0, 0])`; with REPEATS, also "seconds": {NAME: the best
of REPEATS timed calls after a warm-up}.
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


def main(folder, seed, repeats=0):
    torch.set_num_threads(os.cpu_count())
    rng = np.random.default_rng(int(seed))
    checkpoint = os.path.join(folder, "cpnet.pth")
    if not os.path.isfile(checkpoint):
        write_checkpoint(folder)
    model = models.CellposeModel(gpu=False, pretrained_model=checkpoint)
    width = int(model.net.nbase[-1])  # the style vector's length
    params = {"A": rng.normal(0, 0.5, width), "smean": rng.normal(0, 0.05, width), "ymean": 0.1,
              "diam_mean": float(model.diam_mean)}
    size_path = os.path.join(folder, "size_cpnet.npy")
    np.save(size_path, params)
    sizes = models.SizeModel(model, pretrained_size=size_path)
    found, seconds = {}, {}
    for image_path in sorted(glob.glob(os.path.join(folder, "image_*.npy"))):
        name = os.path.basename(image_path)[len("image_"):-len(".npy")]
        image = np.load(image_path)
        seconds[name], (diameter, style_diameter) = best_time(lambda: sizes.eval(image, channels=[0, 0]), int(repeats))
        found[name] = [float(np.ravel(diameter)[0]), float(np.ravel(style_diameter)[0])]
    if int(repeats):
        found["seconds"] = seconds
    print(json.dumps(found))


if __name__ == "__main__":
    main(*sys.argv[1:])
