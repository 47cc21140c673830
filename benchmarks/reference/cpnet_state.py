"""In the reference environment: a CPnet state dict written by biomodels
(`CellposeNet.cellpose_state`, saved as state.npz) made a Cellpose checkpoint, and a
CellposeModel around a CPnet of any widths (Cellpose's own constructor builds its
default widths only)."""

import os

import numpy as np
import torch


def write_checkpoint(folder):
    """DIR/cpnet.pth from DIR/state.npz (arrays in PyTorch layouts); returns its path."""
    with np.load(os.path.join(folder, "state.npz")) as arrays:
        state = {key: torch.from_numpy(arrays[key]) for key in arrays.files}
    for key in [key for key in state if key.endswith(".running_var")]:
        state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    path = os.path.join(folder, "cpnet.pth")
    torch.save(state, path)
    return path


def model_of_any_widths(path, nbase):
    """Cellpose's CellposeModel whose network is the CPnet of `nbase` (input channels
    first) with the weights of the checkpoint at `path`."""
    from cellpose import models
    from cellpose.resnet_torch import CPnet

    model = models.CellposeModel(gpu=False, pretrained_model=False, nchan=nbase[0])
    net = CPnet(list(nbase), model.nclasses, sz=3, mkldnn=model.mkldnn, max_pool=True)
    net.load_model(path, device=model.device)
    net.eval()
    model.net, model.nbase, model.net_ortho = net, list(nbase), None
    model.diam_mean = model.diam_labels = float(net.diam_mean.data.numpy()[0])
    return model
