"""In the reference environment: Cellpose 3.1.1.2's own size estimation (`SizeModel.eval`)
with a CPnet checkpoint and a size model written here.

usage: size_estimate.py DIR SEED
DIR holds cpnet.pth (cpnet_outputs.py writes one) and image_NAME.npy (2-D images).
Writes size_cpnet.npy, a size model as Cellpose saves one (np.save of a dict: A, smean,
ymean, diam_mean; random, seeded, of the network's style length),
and prints a JSON line {NAME: [diameter, diameter from the style alone]} of
`SizeModel.eval(image, channels=[0, 0])`.
"""

import glob
import json
import os
import sys

import numpy as np
import torch
from cellpose import models


def main(folder, seed):
    torch.set_num_threads(os.cpu_count())
    rng = np.random.default_rng(int(seed))
    model = models.CellposeModel(gpu=False, pretrained_model=os.path.join(folder, "cpnet.pth"))
    width = int(model.net.nbase[-1])  # the style vector's length
    params = {"A": rng.normal(0, 0.5, width), "smean": rng.normal(0, 0.05, width), "ymean": 0.1,
              "diam_mean": float(model.diam_mean)}
    size_path = os.path.join(folder, "size_cpnet.npy")
    np.save(size_path, params)
    sizes = models.SizeModel(model, pretrained_size=size_path)
    found = {}
    for image_path in sorted(glob.glob(os.path.join(folder, "image_*.npy"))):
        name = os.path.basename(image_path)[len("image_"):-len(".npy")]
        diameter, style_diameter = sizes.eval(np.load(image_path), channels=[0, 0])
        found[name] = [float(np.ravel(diameter)[0]), float(np.ravel(style_diameter)[0])]
    print(json.dumps(found))


if __name__ == "__main__":
    main(*sys.argv[1:])
