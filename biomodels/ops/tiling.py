"""Tiled inference over images larger than memory allows, with overlapping tiles
blended by a window that fades towards tile edges, so seams do not show."""

import numpy as np


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of size `tile` covering 0..length with at least `overlap`."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(tile, overlap):
    """A (tile, tile) weight map: 1 in the middle, ramping down over `overlap` pixels."""
    ramp = np.ones(tile, np.float32)
    if overlap > 0:
        edge = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
        ramp[:overlap] = edge
        ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)


def predict_tiled(image, predict_batch, tile=512, overlap=64, batch_size=4):
    """Apply `predict_batch` (N, t, t, C) -> (N, t, t, K) over `image` (H, W, C).

    Images smaller than a tile are padded by reflection; the result is (H, W, K).
    """
    height, width = image.shape[:2]
    pad_y, pad_x = max(0, tile - height), max(0, tile - width)
    if pad_y or pad_x:
        image = np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)), mode="reflect" if min(height, width) > 1 else "edge")
    full_h, full_w = image.shape[:2]
    overlap = min(overlap, tile // 2)
    window = blend_window(tile, overlap)[..., np.newaxis]
    corners = [(y, x) for y in tile_starts(full_h, tile, overlap) for x in tile_starts(full_w, tile, overlap)]
    total = None
    weight = np.zeros((full_h, full_w, 1), np.float32)
    for first in range(0, len(corners), batch_size):
        batch_corners = corners[first:first + batch_size]
        tiles = np.stack([image[y:y + tile, x:x + tile] for y, x in batch_corners])
        outputs = np.asarray(predict_batch(tiles), np.float32)
        if total is None:
            total = np.zeros((full_h, full_w, outputs.shape[-1]), np.float32)
        for (y, x), output in zip(batch_corners, outputs):
            total[y:y + tile, x:x + tile] += output * window
            weight[y:y + tile, x:x + tile] += window
    return (total / weight)[:height, :width]
