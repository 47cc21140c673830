"""Cellpose's own PyTorch checkpoints as initial weights for cellular (--init_from):
checked against the configuration before any TensorFlow op runs, then loaded."""

import os

from biomodels.errors import InputError


def is_cellpose_checkpoint(path):
    """Not a run directory nor a .keras file: a PyTorch state dict."""
    return not (path.endswith(".keras") or os.path.isdir(path))


def fitting_state(path, config):
    """The checkpoint's state dict, if its CPnet has this configuration's widths and channels."""
    from biomodels.models.cellpose import cellpose_input_channels, cellpose_widths
    from biomodels.pipelines.torch_checkpoint import read_state_dict

    state = read_state_dict(path)
    widths = cellpose_widths(state, path)
    if widths != tuple(config.nbase):
        raise InputError(path, f"is a CPnet of widths {list(widths)}, but this configuration builds "
                               f"{list(config.nbase)}; use --preset=paper or --set nbase=" + ",".join(map(str, widths)))
    channels = cellpose_input_channels(state)
    if channels != len(config.channels):
        raise InputError(path, f"is a CPnet for {channels} channels, but --set channels= gives {len(config.channels)}")
    return state


def model_from_checkpoint(path, config):
    """A CellposeNet of `config` holding the checkpoint's weights."""
    from biomodels.models import CellposeNet

    model = CellposeNet(nchan=len(config.channels), nbase=config.nbase, diam_mean=config.diameter_mean)
    model.load_cellpose_state(fitting_state(path, config), path)
    return model
