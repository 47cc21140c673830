"""Cellpose-style flows: unit vectors inside every cell that point along the gradient of
heat diffused from the cell's centre, computed for all cells of an image at once.

The centre of a cell is its pixel nearest to the median of its pixel coordinates (so it
lies inside even a crescent-shaped cell). Heat is added at every centre and averaged
over each pixel's 3×3 neighbourhood, where neighbours of another cell or the background
count as zero, for twice the largest cell extent (height + width) of the image; the
flow is the central difference of log(1 + heat) within the cell, normalised to unit
length.
"""

import numpy as np

NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def masks_to_flows(labels, iterations=None):
    """float32 (2, H, W): unit flows (dY, dX) of an instance label image (0 background),
    zero outside cells; `iterations` of diffusion (default: twice the largest extent)."""
    from scipy import ndimage, sparse

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D label image, got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must not be negative")
    flows = np.zeros((2, *labels.shape), np.float32)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not len(ids):
        return flows
    height, width = labels.shape
    padded = np.pad(labels, 1)
    stride = width + 2
    ys, xs = np.nonzero(labels)
    own = labels[ys, xs]
    centre_flat = (ys + 1) * stride + (xs + 1)
    neighbour_index = np.stack([centre_flat + dy * stride + dx for dy, dx in NEIGHBOURS])
    same_cell = padded.reshape(-1)[neighbour_index] == own[None, :]

    # each cell's centre: its pixel nearest to the median of its coordinates
    grid_y, grid_x = np.mgrid[0:height, 0:width]
    median_y = np.asarray(ndimage.median(grid_y, labels, ids))
    median_x = np.asarray(ndimage.median(grid_x, labels, ids))
    lookup = np.zeros(int(ids.max()) + 1)
    distance = np.full(labels.shape, np.inf)
    lookup[ids] = median_y
    distance[ys, xs] = (ys - lookup[own]) ** 2
    lookup[ids] = median_x
    distance[ys, xs] += (xs - lookup[own]) ** 2
    centres = np.asarray(ndimage.minimum_position(distance, labels, ids)).reshape(-1, 2)
    centres_flat = (centres[:, 0] + 1) * stride + (centres[:, 1] + 1)

    if iterations is None:
        extents = [s for s in ndimage.find_objects(labels) if s is not None]
        iterations = 2 * max(s[0].stop - s[0].start + s[1].stop - s[1].start for s in extents)
    # one diffusion step as a sparse matrix over the cells' pixels: the mean of the 3×3
    # neighbours of the same cell
    position = np.full(padded.size, -1)
    position[centre_flat] = np.arange(len(ys))
    rows = np.broadcast_to(np.arange(len(ys)), neighbour_index.shape)[same_cell]
    step = sparse.csr_matrix((np.full(len(rows), 1.0 / len(NEIGHBOURS)), (rows, position[neighbour_index[same_cell]])),
                             shape=(len(ys), len(ys)))
    sources = position[centres_flat]
    heat = np.zeros(len(ys))
    for _ in range(iterations):
        heat[sources] += 1.0
        heat = step @ heat
    # central differences within the cell: a touching cell's heat is not this cell's
    on_grid = np.zeros(padded.size)
    on_grid[centre_flat] = np.log1p(heat)
    heat = on_grid[neighbour_index] * same_cell
    dy = heat[NEIGHBOURS.index((1, 0))] - heat[NEIGHBOURS.index((-1, 0))]
    dx = heat[NEIGHBOURS.index((0, 1))] - heat[NEIGHBOURS.index((0, -1))]
    norm = np.sqrt(dy ** 2 + dx ** 2) + 1e-20
    flows[0, ys, xs] = dy / norm
    flows[1, ys, xs] = dx / norm
    return flows


def follow_flows(flows, pixels, iterations=200):
    """[N, 2] float positions reached from `pixels` ([N, 2] (y, x)) after `iterations`
    Euler steps along `flows` (2, H, W), bilinearly interpolated, positions kept inside
    the image."""
    height, width = flows.shape[1:]
    position = pixels.astype(np.float64)
    limit = np.array([height - 1, width - 1], np.float64)
    for _ in range(iterations):
        position += bilinear(flows, position)
        np.clip(position, 0, limit, out=position)
    return position


def bilinear(image, points):
    """[N, C] values of a (C, H, W) image at [N, 2] float (y, x) points inside it."""
    height, width = image.shape[1:]
    top = np.minimum(np.floor(points[:, 0]).astype(np.int64), height - 2 if height > 1 else 0)
    left = np.minimum(np.floor(points[:, 1]).astype(np.int64), width - 2 if width > 1 else 0)
    fy, fx = points[:, 0] - top, points[:, 1] - left
    bottom, right = np.minimum(top + 1, height - 1), np.minimum(left + 1, width - 1)
    return ((image[:, top, left] * (1 - fy) * (1 - fx) + image[:, top, right] * (1 - fy) * fx
             + image[:, bottom, left] * fy * (1 - fx) + image[:, bottom, right] * fy * fx)).T


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
    from scipy import ndimage

    ids = np.arange(1, int(masks.max()) + 1)
    recomputed = masks_to_flows(masks)
    return sum(np.asarray(ndimage.mean((recomputed[c] - flows[c]) ** 2, masks, ids)) for c in range(2))


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
    clustered into cells, cells whose flow error exceeds `flow_threshold` (None: keep
    all) are dropped, holes are filled and cells under `min_size` pixels removed."""
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
    if flow_threshold is not None and masks.max() > 0:
        errors = flow_errors(masks, flows)
        masks[np.isin(masks, np.flatnonzero(errors > flow_threshold) + 1)] = 0
    masks = fill_holes_and_remove_small(masks, min_size)
    return masks.astype(np.uint16 if masks.max() < 2 ** 16 else np.int32)
