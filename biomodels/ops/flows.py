"""Cellpose-style flows: unit vectors inside every cell that point along the gradient of
heat diffused from the cell's centre, and the masks recovered by following them.

The centre of a cell is its pixel nearest to the median of its pixel coordinates (so it
lies inside even a crescent-shaped cell), the first in raster order on ties. Heat is
added at the centre and averaged over each pixel's 3×3 neighbourhood, where neighbours
of another cell or the background count as zero, for twice the cell's height + width
steps; the flow is the central difference of log(1 + heat) within the cell, normalised
to unit length. The loops run compiled and in parallel over cells and points
(`flow_kernels`).
"""

import numpy as np


def masks_to_flows(labels, iterations=None):
    """float32 (2, H, W): unit flows (dY, dX) of an instance label image (0 background),
    zero outside cells; `iterations` of diffusion for every cell (default: each cell
    twice its height + width)."""
    from biomodels.ops.flow_kernels import cell_geometry, diffuse_cells

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D label image, got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must not be negative")
    flows = np.zeros((2, *labels.shape), np.float32)
    labels = labels.astype(np.int64)
    max_id = int(labels.max()) if labels.size else 0
    if max_id > labels.size:  # sparse ids: number them 1..N so the per-id tables stay small
        _, inverse = np.unique(labels, return_inverse=True)
        labels = inverse.reshape(labels.shape).astype(np.int64) + int(labels.min() > 0)  # 0 stays background
        max_id = int(labels.max())
    ids, boxes, centres = cell_geometry(labels, max_id)
    if not len(ids):
        return flows
    if iterations is None:
        steps = 2 * (boxes[:, 1] - boxes[:, 0] + boxes[:, 3] - boxes[:, 2])
    else:
        steps = np.full(len(ids), int(iterations), np.int64)
    diffuse_cells(labels, ids, boxes, centres, steps, flows)
    return flows


def follow_flows(flows, pixels, iterations=200):
    """[N, 2] float positions reached from `pixels` ([N, 2] (y, x)) after `iterations`
    Euler steps along `flows` (2, H, W), bilinearly interpolated, positions kept inside
    the image."""
    from biomodels.ops.flow_kernels import follow

    positions = np.array(pixels, np.float64).reshape(-1, 2)
    follow(np.ascontiguousarray(np.moveaxis(flows, 0, -1), np.float32), positions, int(iterations))
    return positions


def cluster_positions(positions, shape, min_count=10, grow_count=2, grow_steps=5):
    """Labels of converged positions: sinks are local maxima (5×5) of the positions'
    histogram holding more than `min_count`, grown `grow_steps` times into neighbouring
    bins holding more than `grow_count`; a position takes the label of its bin (0 if
    none)."""
    from scipy import ndimage

    bins = np.round(positions).astype(np.int64)
    flat = bins[:, 0] * shape[1] + bins[:, 1]
    counts = np.bincount(flat, minlength=shape[0] * shape[1]).reshape(shape)
    seeds = (counts == ndimage.maximum_filter(counts, size=5)) & (counts > min_count)
    sinks, _ = ndimage.label(seeds, structure=np.ones((3, 3)))
    allowed = counts > grow_count
    for _ in range(grow_steps):
        grown = ndimage.grey_dilation(sinks, size=3)
        sinks = np.where((sinks == 0) & allowed, grown, sinks)
    return sinks.reshape(-1)[flat]


def flow_errors(masks, flows):
    """Per mask (ids 1..max): the sum over dY and dX of the mean squared difference
    between the flows recomputed from the mask and `flows`."""
    from biomodels.ops.flow_kernels import cell_means

    max_id = int(masks.max())
    recomputed = masks_to_flows(masks)
    squared = ((recomputed - flows) ** 2).sum(axis=0)
    return cell_means(np.asarray(masks, np.int64), squared, max_id)


def fill_holes_and_remove_small(masks, min_size=15):
    """Masks with their holes filled, those smaller than `min_size` pixels removed, and
    the rest numbered 1..n in order of their old ids."""
    from scipy import ndimage

    result = np.zeros_like(masks)
    next_id = 1
    for index, region in enumerate(ndimage.find_objects(masks), start=1):
        if region is None:
            continue
        filled = ndimage.binary_fill_holes(masks[region] == index)
        if filled.sum() < min_size:
            continue
        result[region][filled] = next_id
        next_id += 1
    return result


def masks_from_flows(flows, cellprob, flow_threshold=0.4, cellprob_threshold=0.0, min_size=15, niter=200):
    """Instance labels (uint16, int32 past 65535 cells) from unit flows (2, H, W) (the
    network's flow outputs / 5) and cell-probability logits (H, W): pixels above
    `cellprob_threshold` follow the flows for `niter` steps, their end points are
    clustered into cells, cells whose flow error exceeds `flow_threshold` (None or 0:
    keep all, as Cellpose) are dropped, holes are filled and cells under `min_size`
    pixels removed."""
    flows = np.asarray(flows, np.float32)
    cellprob = np.asarray(cellprob, np.float32)
    if flows.ndim != 3 or flows.shape[0] != 2 or flows.shape[1:] != cellprob.shape:
        raise ValueError(f"expected flows (2, H, W) and cellprob (H, W), got {flows.shape} and {cellprob.shape}")
    shape = cellprob.shape
    foreground = cellprob > cellprob_threshold
    pixels = np.argwhere(foreground)
    masks = np.zeros(shape, np.int32)
    if len(pixels):
        ends = follow_flows(flows * foreground[None], pixels, niter)
        masks[pixels[:, 0], pixels[:, 1]] = cluster_positions(ends, shape)
        too_big = np.flatnonzero(np.bincount(masks.reshape(-1))[1:] > 0.4 * masks.size) + 1
        masks[np.isin(masks, too_big)] = 0
    if flow_threshold and masks.max() > 0:
        errors = flow_errors(masks, flows)
        masks[np.isin(masks, np.flatnonzero(errors > flow_threshold) + 1)] = 0
    masks = fill_holes_and_remove_small(masks, min_size)
    return masks.astype(np.uint16 if masks.max() < 2 ** 16 else np.int32)
