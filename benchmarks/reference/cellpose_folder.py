"""In the reference environment: read a folder as Cellpose 3.1.1.2 reads training data
(`cellpose.io.load_train_test_data`, masks named NAME_masks) and every file named like a
prediction with `cellpose.io.imread`; save what it found.

Writes OUT_DIR/found.json ({"images": names, "labels": [shape, …], "predictions":
{file: [shape, dtype]}}) and OUT_DIR/label_<k>.npy for each label array.

usage: cellpose_folder.py FOLDER OUT_DIR
"""

import glob
import json
import os
import sys

import numpy as np
from cellpose import io


def main(folder, out_dir):
    images, labels, names = io.load_train_test_data(folder, mask_filter="_masks")[:3]
    for index, label in enumerate(labels):
        np.save(os.path.join(out_dir, f"label_{index}.npy"), np.asarray(label), allow_pickle=False)
    predictions = {}
    for path in sorted(glob.glob(os.path.join(folder, "*_cp_*.tif"))):
        array = io.imread(path)
        predictions[os.path.basename(path)] = [list(array.shape), str(array.dtype)]
    found = {"images": [os.path.basename(name) for name in names], "labels": [list(np.shape(label)) for label in labels],
             "predictions": predictions}
    with open(os.path.join(out_dir, "found.json"), "w") as handle:
        json.dump(found, handle)


if __name__ == "__main__":
    main(*sys.argv[1:])
