"""In the reference environment: seconds per training step of Cellpose's CPnet on the CPU,
with Cellpose's loss (MSE of 5 × flows / 2 + BCE with logits) and SGD (momentum 0.9).

usage: cpnet_train_step.py NBASE(comma-separated, input channels first) BATCH CROP STEPS
Prints a JSON line: the median seconds of STEPS steps after two untimed ones.
"""

import json
import os
import sys
import time

import numpy as np
import torch
from cellpose.resnet_torch import CPnet


def main(nbase, batch, crop, steps):
    batch, crop, steps = int(batch), int(crop), int(steps)
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    net = CPnet([int(n) for n in nbase.split(",")], nout=3, sz=3)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(size=(batch, net.nchan, crop, crop)).astype(np.float32))
    flows = torch.from_numpy(rng.normal(size=(batch, 2, crop, crop)).astype(np.float32))
    cells = torch.from_numpy((rng.random((batch, crop, crop)) > 0.5).astype(np.float32))
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        optimizer.zero_grad()
        output = net(images)[0]
        loss = torch.nn.functional.mse_loss(output[:, :2], 5 * flows) / 2
        loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(output[:, 2], cells)
        loss.backward()
        optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - start)
    print(json.dumps({"step_seconds": float(np.median(times))}))


if __name__ == "__main__":
    main(*sys.argv[1:])
