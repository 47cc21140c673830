"""Compiled (numba) loops behind biomodels.ops.flows: heat diffusion inside each cell's
box and Euler integration of positions along the flows, each parallel over cells or
points. Compiled on first use and cached on disk.
"""

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def diffuse_cells(labels, ids, boxes, centres, iterations, flows):
    """Write into `flows` (2, H, W) the unit flows of every cell `ids[i]` in its box
    `boxes[i]` = (y0, y1, x0, x1), heat added at `centres[i]` (absolute y, x) for
    `iterations[i]` steps; each step replaces every pixel of the cell by the mean of its
    3×3 neighbourhood, where pixels outside the cell count as zero (a separable box sum
    over the box, then masked)."""
    for cell in numba.prange(len(ids)):
        y0, y1, x0, x1 = boxes[cell, 0], boxes[cell, 1], boxes[cell, 2], boxes[cell, 3]
        height, width = y1 - y0 + 2, x1 - x0 + 2  # a border of zeros around the box
        inside = np.zeros((height, width), np.float64)
        for y in range(y0, y1):
            for x in range(x0, x1):
                if labels[y, x] == ids[cell]:
                    inside[y - y0 + 1, x - x0 + 1] = 1.0
        heat = np.zeros((height, width), np.float64)
        rows = np.zeros((height, width), np.float64)
        cy, cx = centres[cell, 0] - y0 + 1, centres[cell, 1] - x0 + 1
        for _ in range(iterations[cell]):
            heat[cy, cx] += 1.0
            for y in range(height):
                for x in range(1, width - 1):
                    rows[y, x] = heat[y, x - 1] + heat[y, x] + heat[y, x + 1]
            for y in range(1, height - 1):
                for x in range(1, width - 1):
                    heat[y, x] = (rows[y - 1, x] + rows[y, x] + rows[y + 1, x]) * inside[y, x] / 9.0
        for y in range(1, height - 1):
            for x in range(1, width - 1):
                if inside[y, x] > 0:
                    dy = np.log1p(heat[y + 1, x]) - np.log1p(heat[y - 1, x])
                    dx = np.log1p(heat[y, x + 1]) - np.log1p(heat[y, x - 1])
                    norm = np.sqrt(dy * dy + dx * dx) + 1e-20
                    flows[0, y + y0 - 1, x + x0 - 1] = dy / norm
                    flows[1, y + y0 - 1, x + x0 - 1] = dx / norm


@numba.njit(cache=True, parallel=True, fastmath=True)
def follow(flows, positions, iterations):
    """Move every (y, x) row of `positions` (float64, in place, inside the image) along
    `flows` (H, W, 2: dY, dX) for `iterations` Euler steps, bilinearly interpolated,
    kept inside the image."""
    height, width = flows.shape[0], flows.shape[1]
    last_top, last_left = max(height - 2, 0), max(width - 2, 0)
    for point in numba.prange(positions.shape[0]):
        y, x = positions[point, 0], positions[point, 1]
        for _ in range(iterations):
            top = min(int(y), last_top)  # y >= 0: truncation is the floor
            left = min(int(x), last_left)
            fy, fx = y - top, x - left
            bottom, right = min(top + 1, height - 1), min(left + 1, width - 1)
            w00, w01, w10, w11 = (1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx
            dy = (flows[top, left, 0] * w00 + flows[top, right, 0] * w01
                  + flows[bottom, left, 0] * w10 + flows[bottom, right, 0] * w11)
            dx = (flows[top, left, 1] * w00 + flows[top, right, 1] * w01
                  + flows[bottom, left, 1] * w10 + flows[bottom, right, 1] * w11)
            y = min(max(y + dy, 0.0), height - 1.0)
            x = min(max(x + dx, 0.0), width - 1.0)
        positions[point, 0], positions[point, 1] = y, x
