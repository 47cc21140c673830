"""In the reference environment: build a Cellpose 3.1.1.2 CPnet with random weights and
random batch-norm statistics, save its state dict, an input batch and its outputs.

Also saves other.pth, the state dict of a network that is not a CPnet.

usage: cpnet_outputs.py OUT_DIR NBASE(comma-separated, input channels first) SIZE SEED
"""

import os
import sys

import numpy as np
import torch
from cellpose.resnet_torch import CPnet


def main(out_dir, nbase, size, seed):
    size, seed = int(size), int(seed)
    torch.manual_seed(seed)
    net = CPnet([int(n) for n in nbase.split(",")], nout=3, sz=3)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    net.eval()
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, net.nchan, int(size), int(size))).astype(np.float32)
    with torch.no_grad():
        maps, style, _ = net(torch.from_numpy(images))
    net.save_model(os.path.join(out_dir, "cpnet.pth"))
    np.save(os.path.join(out_dir, "images.npy"), images)
    np.save(os.path.join(out_dir, "maps.npy"), maps.numpy())
    np.save(os.path.join(out_dir, "style.npy"), style.numpy())
    # a state dict of another architecture, which the conversion must refuse
    other = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3), torch.nn.BatchNorm2d(8))
    torch.save(other.state_dict(), os.path.join(out_dir, "other.pth"))


if __name__ == "__main__":
    main(*sys.argv[1:])
