"""Compiled (numba) loops behind biomodels.ops.flows: each cell's box and centre in one
pass over the labels, heat diffusion inside each cell's box, Euler integration of
positions along the flows (in 2-D and 3-D) and per-cell means, parallel over cells or points where that
pays. Compiled on first use and cached on disk.
"""

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def cell_geometry(labels, max_id):
    """(ids [N], boxes [N, 4] (y0, y1, x0, x1), centres [N, 2] (y, x)) of the cells of a
    label image whose ids lie in 1..max_id. A cell's centre is its pixel nearest to the
    median of its pixel coordinates, the first in raster order on ties."""
    height, width = labels.shape
    counts = np.zeros(max_id + 1, np.int64)
    for y in range(height):
        for x in range(width):
            counts[labels[y, x]] += 1
    counts[0] = 0
    ids = np.flatnonzero(counts).astype(np.int64)
    slot = np.full(max_id + 1, -1, np.int64)
    for index in range(len(ids)):
        slot[ids[index]] = index
    starts = np.zeros(len(ids) + 1, np.int64)
    for index in range(len(ids)):
        starts[index + 1] = starts[index] + counts[ids[index]]
    # every cell's pixels in raster order, as one array of segments
    ys = np.empty(starts[-1], np.int64)
    xs = np.empty(starts[-1], np.int64)
    filled = starts[:-1].copy()
    for y in range(height):
        for x in range(width):
            cell = slot[labels[y, x]]
            if cell >= 0:
                ys[filled[cell]] = y
                xs[filled[cell]] = x
                filled[cell] += 1
    boxes = np.empty((len(ids), 4), np.int64)
    centres = np.empty((len(ids), 2), np.int64)
    for cell in numba.prange(len(ids)):
        first, last = starts[cell], starts[cell + 1]
        n = last - first
        cell_ys = ys[first:last]  # already sorted: raster order
        cell_xs = np.sort(xs[first:last])
        median_y = 0.5 * (cell_ys[(n - 1) // 2] + cell_ys[n // 2])
        median_x = 0.5 * (cell_xs[(n - 1) // 2] + cell_xs[n // 2])
        boxes[cell, 0], boxes[cell, 1] = cell_ys[0], cell_ys[n - 1] + 1
        boxes[cell, 2], boxes[cell, 3] = cell_xs[0], cell_xs[n - 1] + 1
        best = np.inf
        for k in range(first, last):  # raster order: the first strict minimum wins ties
            distance = (ys[k] - median_y) ** 2 + (xs[k] - median_x) ** 2
            if distance < best:
                best = distance
                centres[cell, 0], centres[cell, 1] = ys[k], xs[k]
    return ids, boxes, centres


@numba.njit(cache=True)
def cell_means(labels, values, max_id):
    """[max_id] the mean of `values` (H, W) over each cell 1..max_id of `labels` (NaN
    for an id without pixels)."""
    sums = np.zeros(max_id + 1, np.float64)
    counts = np.zeros(max_id + 1, np.int64)
    for y in range(labels.shape[0]):
        for x in range(labels.shape[1]):
            sums[labels[y, x]] += values[y, x]
            counts[labels[y, x]] += 1
    return sums[1:] / counts[1:]


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


_FOLLOW_BLOCK = 16  # points advanced together: their independent steps overlap in the CPU


@numba.njit(cache=True, parallel=True, fastmath=True)
def follow(flows, positions, iterations):
    """Move every (y, x) row of `positions` (float64, in place, inside the image) along
    `flows` (H, W, 2: dY, dX) for `iterations` Euler steps, bilinearly interpolated,
    kept inside the image. Points go in blocks, one step for the whole block at a time:
    one point's steps depend on each other, a block's points do not."""
    height, width = flows.shape[0], flows.shape[1]
    last_top, last_left = max(height - 2, 0), max(width - 2, 0)
    blocks = (positions.shape[0] + _FOLLOW_BLOCK - 1) // _FOLLOW_BLOCK
    for block in numba.prange(blocks):
        first = block * _FOLLOW_BLOCK
        last = min(first + _FOLLOW_BLOCK, positions.shape[0])
        ys = positions[first:last, 0].copy()
        xs = positions[first:last, 1].copy()
        for _ in range(iterations):
            for point in range(last - first):
                y, x = ys[point], xs[point]
                top = min(int(y), last_top)  # y >= 0: truncation is the floor
                left = min(int(x), last_left)
                fy, fx = y - top, x - left
                bottom, right = min(top + 1, height - 1), min(left + 1, width - 1)
                w00, w01, w10, w11 = (1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx
                dy = (flows[top, left, 0] * w00 + flows[top, right, 0] * w01
                      + flows[bottom, left, 0] * w10 + flows[bottom, right, 0] * w11)
                dx = (flows[top, left, 1] * w00 + flows[top, right, 1] * w01
                      + flows[bottom, left, 1] * w10 + flows[bottom, right, 1] * w11)
                ys[point] = min(max(y + dy, 0.0), height - 1.0)
                xs[point] = min(max(x + dx, 0.0), width - 1.0)
        positions[first:last, 0] = ys
        positions[first:last, 1] = xs


@numba.njit(cache=True, parallel=True, fastmath=True)
def follow_3d(flows, positions, iterations):
    """`follow` in a volume: every (z, y, x) row of `positions` moved along `flows`
    (Z, Y, X, 3: dZ, dY, dX), trilinearly interpolated, kept inside the volume."""
    size = (flows.shape[0], flows.shape[1], flows.shape[2])
    blocks = (positions.shape[0] + _FOLLOW_BLOCK - 1) // _FOLLOW_BLOCK
    for block in numba.prange(blocks):
        first = block * _FOLLOW_BLOCK
        last = min(first + _FOLLOW_BLOCK, positions.shape[0])
        points = positions[first:last].copy()
        low, high = np.empty(3, np.int64), np.empty(3, np.int64)
        fraction, step = np.empty(3, np.float64), np.empty(3, np.float64)
        for _ in range(iterations):
            for point in range(last - first):
                for axis in range(3):
                    low[axis] = min(int(points[point, axis]), max(size[axis] - 2, 0))  # >= 0: the floor
                    high[axis] = min(low[axis] + 1, size[axis] - 1)
                    fraction[axis] = points[point, axis] - low[axis]
                step[:] = 0.0
                for corner in range(8):
                    z = high[0] if corner & 4 else low[0]
                    y = high[1] if corner & 2 else low[1]
                    x = high[2] if corner & 1 else low[2]
                    weight = ((fraction[0] if corner & 4 else 1 - fraction[0])
                              * (fraction[1] if corner & 2 else 1 - fraction[1])
                              * (fraction[2] if corner & 1 else 1 - fraction[2]))
                    for axis in range(3):
                        step[axis] += flows[z, y, x, axis] * weight
                for axis in range(3):
                    points[point, axis] = min(max(points[point, axis] + step[axis], 0.0), size[axis] - 1.0)
        positions[first:last] = points
