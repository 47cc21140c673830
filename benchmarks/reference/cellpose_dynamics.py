"""In the reference environment: time cellpose 3.1.1.2's masks_to_flows and compute_masks.

usage: cellpose_dynamics.py DIR REPEATS
DIR holds labels.npy (H, W), flows.npy (2, H, W) unit flows and cellprob.npy (H, W);
writes cellpose_flows.npy, cellpose_masks.npy and prints a JSON line of the best times
in seconds (numba's compilation is done by an untimed first call).
"""

import json
import os
import sys

import numpy as np
import torch
from cellpose import dynamics

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from timing import best_time  # noqa: E402


def main(folder, repeats):
    repeats = int(repeats)
    torch.set_num_threads(os.cpu_count())
    labels = np.load(os.path.join(folder, "labels.npy"))
    flows = np.load(os.path.join(folder, "flows.npy"))
    cellprob = np.load(os.path.join(folder, "cellprob.npy"))
    flow_seconds, cellpose_flows = best_time(lambda: dynamics.masks_to_flows(labels, device=torch.device("cpu")), repeats)
    # compute_masks takes the network's flows, which are 5 × the unit flows
    mask_seconds, masks = best_time(lambda: dynamics.compute_masks(5 * flows, cellprob, niter=200, cellprob_threshold=0.0,
                                                                   flow_threshold=0.4, min_size=15), repeats)
    np.save(os.path.join(folder, "cellpose_flows.npy"), np.asarray(cellpose_flows, np.float32))
    np.save(os.path.join(folder, "cellpose_masks.npy"), np.asarray(masks))
    print(json.dumps({"masks_to_flows": flow_seconds, "compute_masks": mask_seconds}))


if __name__ == "__main__":
    main(*sys.argv[1:])
