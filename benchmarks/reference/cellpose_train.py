"""In the reference environment: train Cellpose 3.1.1.2's CPnet from scratch with its own
`train_seg` on a Cellpose training folder, time it, and segment the test images.

usage: cellpose_train.py FOLDER EPOCHS OUT [SEED]
FOLDER holds train/, val/ and test/, each NAME.tif beside NAME_masks.tif (one gray
channel). Training: channels [0, 0], SGD (learning rate 0.2, momentum 0.9, weight decay
1e-5), batch 8, 224² crops, min_train_masks 5, the val images as its test data; each
epoch is one pass over the training images (train_seg's default). The test images are
segmented at the training masks' mean diameter (what the trained net holds), and
OUT/NAME_masks.npy written for each. SEED (default 0) seeds torch's initial weights and
numpy's draws (train_seg's order and augmentation). Prints a JSON line: training seconds, diameter.
"""

import glob
import json
import logging
import os
import sys
import tempfile
import time

import numpy as np
import tifffile
import torch
from cellpose import models, train


def read_folder(folder):
    images = sorted(path for path in glob.glob(os.path.join(folder, "*.tif")) if not path.endswith("_masks.tif"))
    return ([tifffile.imread(path).astype(np.float32) for path in images],
            [tifffile.imread(path[:-4] + "_masks.tif").astype(np.int32) for path in images],
            [os.path.basename(path)[:-4] for path in images])


def main(folder, epochs, out, seed=0):
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(int(seed))
    np.random.seed(int(seed))
    train_images, train_labels, _ = read_folder(os.path.join(folder, "train"))
    val_images, val_labels, _ = read_folder(os.path.join(folder, "val"))
    test_images, _, test_names = read_folder(os.path.join(folder, "test"))
    model = models.CellposeModel(gpu=False, model_type=None, pretrained_model=False, diam_mean=30.0, nchan=2)
    with tempfile.TemporaryDirectory() as save_path:
        start = time.perf_counter()
        train.train_seg(model.net, train_data=train_images, train_labels=train_labels, test_data=val_images,
                        test_labels=val_labels, channels=[0, 0], normalize=True, learning_rate=0.2, SGD=True,
                        weight_decay=1e-5, momentum=0.9, batch_size=8, n_epochs=int(epochs), min_train_masks=5,
                        save_path=save_path, save_every=10**9)
        seconds = time.perf_counter() - start
    diameter = float(model.net.diam_labels.item())
    os.makedirs(out, exist_ok=True)
    for image, name in zip(test_images, test_names):
        masks = model.eval(image, channels=[0, 0], diameter=diameter)[0]
        np.save(os.path.join(out, f"{name}_masks.npy"), masks.astype(np.int32))
    print(json.dumps({"train_seconds": seconds, "diameter": diameter}))


if __name__ == "__main__":
    main(*sys.argv[1:])
