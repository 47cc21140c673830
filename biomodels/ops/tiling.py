"""Tiled inference over images or volumes larger than memory allows, with overlapping
tiles blended by a window that fades towards tile edges, so seams do not show."""

import itertools

import numpy as np


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of size `tile` covering 0..length with at least `overlap`."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def plan_tiles(shape, max_elements, overlap):
    """The tile shape for an image or volume of `shape`: the whole of it when it holds at
    most `max_elements` pixels or voxels, else the fewest tiles per axis (adding one at
    a time to the axis with the longest tile) whose tiles, overlapping by `overlap` (an
    int, or one per axis), each hold at most `max_elements`, split evenly. A tile of
    2·overlap + 1 or less is split no further."""
    shape = tuple(int(n) for n in shape)
    overlaps = (overlap,) * len(shape) if np.isscalar(overlap) else tuple(overlap)
    counts = [1] * len(shape)

    def sizes():
        return [-(-(n + (k - 1) * o) // k) for n, k, o in zip(shape, counts, overlaps)]

    while int(np.prod(sizes())) > max_elements:
        splittable = [axis for axis, size in enumerate(sizes()) if size > 2 * overlaps[axis] + 1]
        if not splittable:
            break
        counts[max(splittable, key=lambda axis: sizes()[axis])] += 1
    return tuple(sizes())


def _ramp(tile, overlap):
    ramp = np.ones(tile, np.float32)
    if overlap > 0:
        edge = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
        ramp[:overlap] = edge
        ramp[-overlap:] = edge[::-1]
    return ramp


def blend_window(tile, overlap):
    """A weight map of shape `tile` (an int means a square): 1 in the middle, ramping
    down over `overlap` pixels (an int, or one per axis) towards each edge."""
    tiles = (tile, tile) if np.isscalar(tile) else tuple(tile)
    overlaps = (overlap,) * len(tiles) if np.isscalar(overlap) else tuple(overlap)
    window = np.ones((), np.float32)
    for size, margin in zip(tiles, overlaps):
        window = np.multiply.outer(window, _ramp(size, margin))
    return window


def predict_tiled(image, predict_batch, tile=512, overlap=64, batch_size=4, pad_value=None):
    """Apply `predict_batch` (N, *tile, C) -> (N, *tile, K) over `image` (*spatial, C),
    2-D or 3-D; `tile` and `overlap` are an int for every axis or one per axis.

    Axes shorter than a tile are padded by reflection, or with `pad_value` when given
    (what training crops were padded with); the result is (*spatial, K).
    """
    spatial = image.shape[:-1]
    tiles = (tile,) * len(spatial) if np.isscalar(tile) else tuple(tile)
    overlaps = (overlap,) * len(spatial) if np.isscalar(overlap) else tuple(overlap)
    overlaps = tuple(min(o, t // 2) for o, t in zip(overlaps, tiles))
    padding = [(0, max(0, t - n)) for t, n in zip(tiles, spatial)]
    if any(after for _, after in padding):
        if pad_value is not None:
            image = np.pad(image, padding + [(0, 0)], constant_values=pad_value)
        else:
            image = np.pad(image, padding + [(0, 0)], mode="reflect" if min(spatial) > 1 else "edge")
    full = image.shape[:-1]
    window = blend_window(tiles, overlaps)[..., np.newaxis]
    corners = list(itertools.product(*(tile_starts(n, t, o) for n, t, o in zip(full, tiles, overlaps))))
    if len(corners) == 1:  # one tile, the (padded) image itself: the untiled pass, nothing to blend
        output = np.asarray(predict_batch(image[np.newaxis]), np.float32)[0]
        return output[tuple(slice(0, n) for n in spatial)]
    total = None
    weight = np.zeros(full + (1,), np.float32)
    for first in range(0, len(corners), batch_size):
        batch_corners = corners[first:first + batch_size]
        regions = [tuple(slice(c, c + t) for c, t in zip(corner, tiles)) for corner in batch_corners]
        outputs = np.asarray(predict_batch(np.stack([image[region] for region in regions])), np.float32)
        if total is None:
            total = np.zeros(full + (outputs.shape[-1],), np.float32)
        for region, output in zip(regions, outputs):
            total[region] += output * window
            weight[region] += window
    return (total / weight)[tuple(slice(0, n) for n in spatial)]
