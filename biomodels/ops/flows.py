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
