"""In the reference environment: Cellpose 3.1.1.2's own 3-D segmentation of a Z-stack
(`CellposeModel.eval` with do_3D=True, and with stitch_threshold) with a CPnet written
by biomodels, and its `masks_to_flows` of a label volume.

usage: cellpose_3d.py DIR NBASE DIAMETER ANISOTROPY STITCH_THRESHOLD REPEATS [MODES]
DIR holds state.npz (cpnet_state.py) and stack.npy (Z, Y, X), and may hold labels.npy
(a label volume). NBASE: the CPnet's widths, input channels first (comma-separated).
Writes masks_3d.npy, flows_3d.npy (dZ, dY, dX: the summed network flows, as Cellpose
follows them) and cellprob_3d.npy of eval(do_3D=True, anisotropy), masks_3d_isotropic.npy
of the same with resample=False (the flows followed in the resampled, isotropic stack and
the masks resized back), masks_stitch.npy of
eval(stitch_threshold) when it is above 0, and flows_labels.npy of masks_to_flows(labels).
MODES (comma-separated, default all): do_3D, do_3D_isotropic, stitch.
Every eval: channels=[0, 0], the given diameter, Cellpose's defaults otherwise. Prints a
JSON line of the best of REPEATS seconds of each and the process's peak memory (MiB)
after the do_3D runs. The first call is not timed (it compiles numba's kernels).
"""

import json
import os
import resource
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cpnet_state import model_of_any_widths, write_checkpoint  # noqa: E402
from timing import best_time  # noqa: E402


def main(folder, nbase, diameter, anisotropy, stitch_threshold, repeats, modes="do_3D,do_3D_isotropic,stitch"):
    torch.set_num_threads(os.cpu_count())
    diameter, anisotropy, stitch_threshold = float(diameter), float(anisotropy), float(stitch_threshold)
    model = model_of_any_widths(write_checkpoint(folder), [int(n) for n in nbase.split(",")])
    stack = np.load(os.path.join(folder, "stack.npy"))
    modes = modes.split(",")
    found = {}
    if "do_3D" in modes:
        run_do_3D(model, stack, folder, diameter, anisotropy, int(repeats), found)
    if "do_3D_isotropic" in modes:
        found["do_3D_isotropic"], (masks, *_) = best_time(
            lambda: model.eval(stack, channels=[0, 0], z_axis=0, diameter=diameter, do_3D=True, anisotropy=anisotropy,
                               resample=False), int(repeats))
        np.save(os.path.join(folder, "masks_3d_isotropic.npy"), np.asarray(masks))
    if "stitch" in modes and stitch_threshold > 0:
        found["stitch"], (masks, *_) = best_time(
            lambda: model.eval(stack, channels=[0, 0], z_axis=0, diameter=diameter,
                               stitch_threshold=stitch_threshold), int(repeats))
        np.save(os.path.join(folder, "masks_stitch.npy"), np.asarray(masks))
    labels_path = os.path.join(folder, "labels.npy")
    if os.path.isfile(labels_path):
        from cellpose import dynamics

        np.save(os.path.join(folder, "flows_labels.npy"), dynamics.masks_to_flows(np.load(labels_path)))
    print(json.dumps(found))


def run_do_3D(model, stack, folder, diameter, anisotropy, repeats, found):
    """eval(do_3D=True): its time and the process's peak memory into `found`; its masks,
    summed flows and cell probability into `folder`."""
    found["do_3D"], (masks, flows, _) = best_time(
        lambda: model.eval(stack, channels=[0, 0], z_axis=0, diameter=diameter, do_3D=True, anisotropy=anisotropy),
        repeats)
    found["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(os.path.join(folder, "masks_3d.npy"), np.asarray(masks))
    np.save(os.path.join(folder, "flows_3d.npy"), np.asarray(flows[1]))
    np.save(os.path.join(folder, "cellprob_3d.npy"), np.asarray(flows[2]))


if __name__ == "__main__":
    main(*sys.argv[1:])
