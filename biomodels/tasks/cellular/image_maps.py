"""The network's maps of one normalised image, as Cellpose's `run_net` makes them (resized
to the network's cell diameter, given a border, run in overlapping tiles, cropped and
resized back), and `Segmentation`, cellular's answer for an image or a Z-stack: what
`inference` (2-D images) and `stacks` (Z-stacks) share."""

import dataclasses

import numpy as np

from biomodels.tasks.cellular import data
from biomodels.tasks.cellular.config import IMAGE_BORDER, TILE_PIXELS

#: the flow steps Cellpose follows at the network's own scale (200 / scale at another)
FLOW_STEPS = 200


@dataclasses.dataclass(frozen=True)
class Segmentation:
    """cellular's answer for one image or Z-stack.

    Attributes:
        masks: instance labels [H, W] (0 background, cells 1..N), int32; a stack's
            [Z, Y, X], uint16 (uint32 past 65535 cells).
        flows: unit flows towards each cell's centre [2, H, W] (dY, dX), float32;
            None when the masks were computed in the model's graph (it answers masks only).
            A stack's: [3, Z, Y, X] (dZ, dY, dX, each the sum of two slice kinds' flows)
            with do_3D, [2, Z, Y, X] when slices are stitched.
        cellprob: the cell-probability logit [H, W] ([Z, Y, X]; with do_3D the sum of
            the three slice kinds'), float32; None as `flows`.
        diameter: the cell diameter in pixels the image was rescaled from.
    """

    masks: np.ndarray
    flows: np.ndarray
    cellprob: np.ndarray
    diameter: float


def network_maps(normalised, image, scale, *, tile, overlap, batch_size):
    """[H, W, 3] (unit dY, dX, cell-probability logit) of a normalised image [H, W, C]:
    resized by `scale` (the network's diameter over the image's), given a border of
    IMAGE_BORDER zero pixels, run in overlapping tiles (`network_tiles`) through
    `normalised` (tiles [N, h, w, C] -> {"flows", "cellprob"}, the model's `normalised`
    signature), and cropped and resized back."""
    from biomodels.ops.tiling import predict_tiled

    height, width = image.shape[:2]
    if abs(scale - 1.0) > 1e-3:
        image = data.resize(image, max(8, round(height * scale)), max(8, round(width * scale)))
    border = IMAGE_BORDER
    image = np.pad(image, ((border, border), (border, border), (0, 0)))

    def run(tiles):
        outputs = normalised(tiles)
        return np.concatenate([np.asarray(outputs["flows"]), np.asarray(outputs["cellprob"])[..., np.newaxis]], axis=-1)

    tiles, batch_size = network_tiles(image.shape[:2], tile, overlap, batch_size)
    maps = predict_tiled(image, run, tile=tiles, overlap=overlap, batch_size=batch_size)[border:-border, border:-border]
    if maps.shape[:2] != (height, width):
        maps = data.resize(maps, height, width)
    return maps


def flow_steps(scale):
    """The steps masks follow the flows for at a scale (the network's diameter over the
    cells'), as Cellpose's eval with its default resample: 200 at the network's diameter,
    more for cells larger than it and fewer for smaller ones, since their flows are
    followed at the image's own size."""
    return max(1, int(FLOW_STEPS / scale))


def network_tiles(shape, tile, overlap, batch_size):
    """(tile shape, tiles a network call) for a bordered image of `shape` (H, W): with
    `tile` (--tile), square tiles of `tile` pixels plus the border (the border is extra),
    `batch_size` a call; without, the fewest even tiles of at most TILE_PIXELS
    overlapping by `overlap` (the whole image when it fits), as many a call as fit
    TILE_PIXELS, at most `batch_size`."""
    from biomodels.ops.tiling import plan_tiles

    if tile:
        return (min(tile + 2 * IMAGE_BORDER, shape[0]), min(tile + 2 * IMAGE_BORDER, shape[1])), batch_size
    tiles = plan_tiles(shape, TILE_PIXELS, overlap)
    return tiles, max(1, min(batch_size, TILE_PIXELS // int(np.prod(tiles))))
