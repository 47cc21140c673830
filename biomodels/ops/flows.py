"""Cellpose-style flows: unit vectors inside every cell that point along the gradient of
heat diffused from the cell's centre, and the masks recovered by following them.

The centre of a cell is its pixel nearest to the median of its pixel coordinates (so it
lies inside even a crescent-shaped cell), the first in raster order on ties. Heat is
added at the centre and averaged over each pixel's 3×3 neighbourhood, where neighbours
of another cell or the background count as zero, for twice the cell's height + width
steps; the flow is the central difference of log(1 + heat) within the cell, normalised
to unit length. The loops run compiled and in parallel over cells and points
(`flow_kernels`).

Z-stacks (3-D), as Cellpose 3 does them: a label volume's flows are the sums of the 2-D
flows of its slices along each axis (so a component is the sum of two unit flows), and
masks come from following such flows in 3-D (`volume_steps`: halved, where Cellpose
follows the sums and overshoots), clustered in 3-D; the flow-error check is 2-D only,
as in Cellpose.
"""

import numpy as np


def masks_to_flows(labels, iterations=None):
    """float32 (2, H, W): unit flows (dY, dX) of an instance label image (0 background),
    zero outside cells; `iterations` of diffusion for every cell (default: each cell
    twice its height + width). A label volume (Z, Y, X) gives (3, Z, Y, X) (dZ, dY, dX):
    each component the sum of the 2-D flows of the two kinds of slices that hold it, as
    Cellpose's masks_to_flows."""
    labels = np.asarray(labels)
    if labels.ndim == 3:
        return _volume_flows(labels, iterations)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D label image or a 3-D label volume, got shape {labels.shape}")
    return _image_flows(labels, iterations)


def _volume_flows(labels, iterations):
    """(3, Z, Y, X): for each axis, the 2-D flows of every slice across it added to the
    flows of the slice's two axes."""
    flows = np.zeros((3, *labels.shape), np.float32)
    for axis in range(3):
        kept = [other for other in range(3) if other != axis]
        for index in range(labels.shape[axis]):
            where = tuple(index if dim == axis else slice(None) for dim in range(3))
            plane = labels[where]
            if plane.any():
                plane_flows = _image_flows(plane, iterations)
                for component, dim in enumerate(kept):
                    flows[(dim, *where)] += plane_flows[component]
    return flows


def _image_flows(labels, iterations):
    from biomodels.ops.flow_kernels import cell_geometry, diffuse_cells

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


def volume_steps(flows, anisotropy=1.0):
    """The steps to follow on a stack's own grid for a volume's summed flows (3, Z, Y, X)
    (`masks_to_flows`', or do_3D's network flows): each component halved, the mean of
    the two slice flows that hold it, and dZ divided by the `anisotropy` (the Z spacing
    over the pixel size) of flows that point in the resampled, isotropic stack.
    Cellpose 3 follows the sums unconverted: steps of up to two voxels overshoot a
    cell's centre and, across the slices of an anisotropic stack, up to 2 × anisotropy;
    the points of a cell then end in two clusters and the cell loses voxels or splits."""
    divisors = np.array([2.0 * anisotropy, 2.0, 2.0], np.float32)[:, None, None, None]
    return np.asarray(flows, np.float32) / divisors


def follow_flows(flows, pixels, iterations=200):
    """[N, D] float positions reached from `pixels` ([N, D] (y, x) or (z, y, x)) after
    `iterations` Euler steps along `flows` (D, *shape), interpolated (bi- or trilinearly),
    positions kept inside the image."""
    from biomodels.ops.flow_kernels import follow, follow_3d

    dims = len(flows)
    positions = np.array(pixels, np.float64).reshape(-1, dims)
    kernel = follow if dims == 2 else follow_3d
    kernel(np.ascontiguousarray(np.moveaxis(flows, 0, -1), np.float32), positions, int(iterations))
    return positions


def cluster_positions(positions, shape, min_count=10, grow_count=2, grow_steps=5):
    """Labels of converged positions ([N, D] in an image or volume of `shape`): sinks are
    local maxima (5 bins a side) of the positions' histogram holding more than
    `min_count`, grown `grow_steps` times into neighbouring bins holding more than
    `grow_count`; a position takes the label of its bin (0 if none)."""
    from scipy import ndimage

    bins = np.round(positions).astype(np.int64)
    flat = np.ravel_multi_index(tuple(bins.T), shape)
    counts = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)
    seeds = (counts == ndimage.maximum_filter(counts, size=5)) & (counts > min_count)
    sinks, _ = ndimage.label(seeds, structure=np.ones((3,) * len(shape)))
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
    """Masks (2-D or 3-D) with their holes filled, those smaller than `min_size` pixels
    removed, and the rest numbered 1..n in order of their old ids."""
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
    clustered into cells, cells of more than 40 % of the image are dropped, cells whose
    flow error exceeds `flow_threshold` (None or 0: keep all, as Cellpose) are dropped,
    holes are filled and cells under `min_size` pixels removed. A volume's flows
    (3, Z, Y, X) and cellprob (Z, Y, X) give 3-D labels, without the flow-error check
    (Cellpose's do_3D)."""
    flows = np.asarray(flows, np.float32)
    cellprob = np.asarray(cellprob, np.float32)
    if cellprob.ndim not in (2, 3) or flows.shape != (cellprob.ndim, *cellprob.shape):
        raise ValueError(f"expected flows (2, H, W) and cellprob (H, W), or flows (3, Z, Y, X) and cellprob "
                         f"(Z, Y, X); got {flows.shape} and {cellprob.shape}")
    shape = cellprob.shape
    foreground = cellprob > cellprob_threshold
    pixels = np.argwhere(foreground)
    masks = np.zeros(shape, np.int32)
    if len(pixels):
        ends = follow_flows(flows * foreground[None], pixels, niter)
        masks[tuple(pixels.T)] = cluster_positions(ends, shape)
        too_big = np.flatnonzero(np.bincount(masks.reshape(-1))[1:] > 0.4 * masks.size) + 1
        masks[np.isin(masks, too_big)] = 0
    if flow_threshold and masks.max() > 0 and masks.ndim == 2:
        errors = flow_errors(masks, flows)
        masks[np.isin(masks, np.flatnonzero(errors > flow_threshold) + 1)] = 0
    masks = fill_holes_and_remove_small(masks, min_size)
    return masks.astype(np.uint16 if masks.max() < 2 ** 16 else np.int32)
