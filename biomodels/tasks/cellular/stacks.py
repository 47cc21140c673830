"""Z-stacks for cellular: 3-D segmentation as Cellpose's `eval` does it, and the files.

Two ways, as Cellpose offers them:
- do_3D: the stack is resampled so its cells are the network's diameter in every
  direction (Z by the anisotropy, the Z spacing over the pixel size), the network runs
  on every YX, ZX and ZY slice, and each direction's flow is the sum of the two kinds
  of slices that hold it (the cell probability the sum of all three); resampled back,
  the flows are followed in 3-D on the stack's own grid (ops.flows.volume_steps: the
  sums halved and the Z component divided by the anisotropy, where Cellpose 3 follows
  the sums unconverted and overshoots).
- stitch_threshold: every Z slice is segmented in 2-D and masks of consecutive slices
  whose IoU reaches the threshold share a label (ops.matching.stitch_slices).
The whole stack is normalised at once (Cellpose's norm3D). Stacks are read from TIFF
(ZYX, ZCYX as ImageJ writes them, or any order tifffile names) and OME-Zarr; masks are
written as a 3-D ImageJ stack (or OME-Zarr for an OME-Zarr input) with the voxel size
kept.
"""

import dataclasses

import numpy as np

from biomodels.errors import ConfigError, InputError
from biomodels.ops.cellpose_parts import map_part
from biomodels.pipelines import ome_zarr, readers
from biomodels.tasks.cellular import data
from biomodels.tasks.cellular.config import IMAGE_BORDER
from biomodels.tasks.cellular.image_maps import Segmentation, flow_steps, network_maps, network_tiles

#: tifffile's names for an axis of pages, taken as Z when a stack names no Z
PAGE_AXES = "QI"


@dataclasses.dataclass(frozen=True)
class Stack:
    """A Z-stack as read.

    Attributes:
        image: float32 [Z, Y, X, C], the chosen channels (data.choose_channels).
        voxel_size: (z, y, x) in `unit`, or None when the file does not give it.
        unit: the voxel size's unit ("micron", "angstrom"...), or None.
    """

    image: np.ndarray
    voxel_size: tuple = None
    unit: str = None

    @property
    def anisotropy(self):
        """The Z spacing over the pixel width, or None when the file does not say."""
        if self.voxel_size is None:
            return None
        return self.voxel_size[0] / self.voxel_size[2]


def read_stack(path, channels, gray):
    """The `Stack` of a TIFF or OME-Zarr file's chosen `channels` (see
    data.choose_channels)."""
    if ome_zarr.is_ome_zarr(path):
        image = ome_zarr.Image(path)
        array = image.spatial("zyxc")
        axes, voxel_size, unit = "zyxc"[:array.ndim], image.voxel_size("zyx"), "angstrom"
    elif path.lower().endswith((".tif", ".tiff")):
        array, axes, voxel_size, unit = _read_tiff_stack(path)
    else:
        raise InputError(path, "is not a Z-stack: --do_3D and --stitch_threshold take TIFF or OME-Zarr stacks")
    return Stack(stack_channels(array, axes, channels, gray, path), voxel_size, unit)


def _read_tiff_stack(path):
    """(array, its axes in lower case, voxel size (z, y, x) or None, unit or None)."""
    import tifffile

    readers.require_exists(path)
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            array, axes = series.asarray(), series.axes.lower().replace("s", "c")
            spacing = (tiff.imagej_metadata or {}).get("spacing")
            unit = (tiff.imagej_metadata or {}).get("unit")
            resolution = [series.pages[0].tags.get(name) for name in ("YResolution", "XResolution")]
    except Exception as error:  # tifffile raises many kinds for damaged files
        raise InputError(path, f"not a readable image ({str(error).splitlines()[0]})") from None
    if "z" not in axes and sum(axes.count(axis.lower()) for axis in PAGE_AXES) == 1:
        axes = "".join("z" if axis.upper() in PAGE_AXES else axis for axis in axes)
    voxel_size = None
    if spacing and all(resolution):
        sizes = [tag.value[1] / tag.value[0] if tag.value[0] else 0.0 for tag in resolution]
        if all(sizes):
            voxel_size = (float(spacing), *sizes)
    return array, axes, voxel_size, unit if voxel_size else None


def stack_channels(array, axes, channels, gray, source="the stack"):
    """float32 [Z, Y, X, len(channels)] of `array` whose axes are named by `axes` (such as
    "zyx", "zcyx"; "c" optional; other axes must hold one entry). `source` names it in
    errors."""
    array = np.asarray(array)
    ome_zarr.require_single(source, axes, array.shape, "zyxc", "one Z-stack (axes z, y, x and channels)")
    if not all(axis in axes for axis in "zyx"):
        raise InputError(source, f"has axes {axes} (shape {array.shape}): --do_3D and --stitch_threshold "
                                 "segment Z-stacks (axes z, y and x)")
    index = tuple(slice(None) if axis in "zyxc" else 0 for axis in axes)
    kept = [axis for axis in axes if axis in "zyxc"]
    array = array[index]
    if "c" not in kept:
        array, kept = array[..., np.newaxis], kept + ["c"]
    array = np.transpose(array, [kept.index(axis) for axis in "zyxc"])
    if array.shape[-1] > 4:
        raise InputError(source, f"has {array.shape[-1]} channels: expected at most 4")
    if min(array.shape[1:3]) < 8:
        raise InputError(source, f"slices are too small ({array.shape[2]}×{array.shape[1]})")
    readers.require_finite(source, array)
    return data.choose_channels(array, channels, gray)


def array_axes(shape):
    """The axes of a stack given as an array: (Z, Y, X), (Z, Y, X, C) or ImageJ's
    (Z, C, Y, X), channels being at most 4 and fewer than the sides."""
    if len(shape) == 3:
        return "zyx"
    if len(shape) == 4 and shape[1] <= 4 < min(shape[2:]):
        return "zcyx"
    if len(shape) == 4 and shape[-1] <= 4:
        return "zyxc"
    raise InputError("the stack", f"has shape {shape}: expected (Z, Y, X), (Z, Y, X, C) or (Z, C, Y, X)")


def normalise_stack(image):
    """[Z, Y, X, C] with each channel scaled so the whole stack's 1st and 99th
    percentiles become 0 and 1 (Cellpose's norm3D)."""
    channels = image.reshape(-1, image.shape[-1])
    low, high = (np.percentile(channels, q, axis=0) for q in (1.0, 99.0))
    return data.normalise_between(image, low, high)


def resample(volume, shape):
    """[Z, Y, X, K] resized linearly to `shape` (Z', Y', X'): each Z slice in Y and X,
    then across Z."""
    if volume.shape[1:3] != tuple(shape[1:]):
        volume = data.resize(volume, *shape[1:])
    if volume.shape[0] != shape[0]:
        volume = data.resize(volume.transpose(1, 0, 2, 3), shape[0], shape[2]).transpose(1, 0, 2, 3)
    return np.ascontiguousarray(volume, np.float32)


def slice_maps(normalised, volume, axis, *, tile, overlap, batch_size):
    """[*volume's spatial shape, 3]: the maps (unit flows along the slice's two axes, the
    cell-probability logit) of every slice of `volume` [Z, Y, X, C] across `axis`, at
    the network's scale. Slices that fit one tile (image_maps.network_tiles) go through
    the network as many at a time as its plan allows, each with the border the
    whole-image pass gives; larger ones in tiles (image_maps.network_maps)."""
    slices = np.moveaxis(volume, axis, 0)
    border = IMAGE_BORDER
    bordered = (slices.shape[1] + 2 * border, slices.shape[2] + 2 * border)
    maps = np.empty((*slices.shape[:3], 3), np.float32)
    tiles, slices_a_call = network_tiles(bordered, tile, overlap, batch_size)
    if tuple(tiles) != bordered:
        for index, plane in enumerate(slices):
            maps[index] = network_maps(normalised, plane, 1.0, tile=tile, overlap=overlap, batch_size=batch_size)
    else:
        for first in range(0, len(slices), slices_a_call):
            batch = np.pad(slices[first:first + slices_a_call], ((0, 0), (border, border), (border, border), (0, 0)))
            outputs = normalised(batch)
            found = np.concatenate([np.asarray(outputs["flows"]), np.asarray(outputs["cellprob"])[..., np.newaxis]], -1)
            maps[first:first + slices_a_call] = found[:, border:-border, border:-border]
    return np.moveaxis(maps, 0, axis)


def network_maps_3d(normalised, image, scale, anisotropy, *, tile, overlap, batch_size):
    """[Z, Y, X, 4] (dZ, dY, dX, cell-probability logit) of a normalised stack [Z, Y, X, C]
    as Cellpose's do_3D makes them: the stack resampled by `scale` (the network's
    diameter over the cells') in Y and X and by `scale` × `anisotropy` in Z, the network
    run on its slices across each axis, every flow component the sum of the two slice
    kinds that hold it and the logit the sum of all three, resampled back."""
    depth, height, width = image.shape[:3]
    scaled = (max(1, round(depth * anisotropy * scale)), max(8, round(height * scale)), max(8, round(width * scale)))
    volume = resample(image, scaled)
    summed = np.zeros((*scaled, 4), np.float32)
    for axis in range(3):
        maps = slice_maps(normalised, volume, axis, tile=tile, overlap=overlap, batch_size=batch_size)
        in_plane = [other for other in range(3) if other != axis]
        for component, other in enumerate(in_plane):
            summed[..., other] += maps[..., component]
        summed[..., 3] += maps[..., 2]
        del maps
    return resample(summed, (depth, height, width))


def segment_stack(predictor, raw, settings):
    """The Segmentation of a stack [Z, Y, X, C] of chosen channels (`Stack.image`) under
    `settings` (do_3D, or stitch_threshold > 0; anisotropy resolved): masks [Z, Y, X];
    flows (3, Z, Y, X) (dZ, dY, dX) for do_3D, (2, Z, Y, X) each slice's for stitching;
    cellprob [Z, Y, X]."""
    from biomodels.ops.flows import fill_holes_and_remove_small, masks_from_flows, volume_steps
    from biomodels.ops.matching import stitch_slices

    normalised = lambda tiles: predictor("normalised", images=np.ascontiguousarray(tiles, np.float32))  # noqa: E731
    image = normalise_stack(raw)
    scale = settings.diameter_mean / settings.diameter
    thresholds = settings.thresholds
    tiling = {"tile": settings.tile, "overlap": settings.overlap, "batch_size": settings.batch_size}
    if settings.do_3D:
        maps = network_maps_3d(normalised, image, scale, settings.anisotropy, **tiling)
        flows, cellprob = np.moveaxis(maps[..., :3], -1, 0), maps[..., 3]
        masks = masks_from_flows(volume_steps(flows, settings.anisotropy), cellprob,
                                 cellprob_threshold=thresholds["cellprob_threshold"], min_size=thresholds["min_size"],
                                 niter=flow_steps(scale))
    else:
        depth, height, width = image.shape[:3]
        resized = resample(image, (depth, max(8, round(height * scale)), max(8, round(width * scale))))
        maps = resample(slice_maps(normalised, resized, 0, **tiling), (depth, height, width))
        flows, cellprob = np.moveaxis(map_part(maps, "flows"), -1, 0), map_part(maps, "cellprob")
        per_slice = np.stack([masks_from_flows(flows[:, z], cellprob[z], thresholds["flow_threshold"],
                                               thresholds["cellprob_threshold"], min_size=0, niter=flow_steps(scale))
                              for z in range(depth)])
        masks = fill_holes_and_remove_small(stitch_slices(per_slice, settings.stitch_threshold),
                                            thresholds["min_size"])
    masks = masks.astype(np.uint16 if masks.max() < 2 ** 16 else np.uint32)
    return Segmentation(masks=masks, flows=np.ascontiguousarray(flows, np.float32),
                        cellprob=np.ascontiguousarray(cellprob, np.float32), diameter=settings.diameter)


def with_anisotropy(settings, stack):
    """`settings` with the anisotropy resolved for `stack`: the one given, else the
    stack's voxel size's, else 1."""
    anisotropy = settings.anisotropy or stack.anisotropy or 1.0
    return dataclasses.replace(settings, anisotropy=float(anisotropy))


def check_stack_settings(do_3D, stitch_threshold, diameter, masks_in):
    """One line for what a stack cannot be segmented with."""
    if do_3D and stitch_threshold:
        raise ConfigError("--do_3D and --stitch_threshold are two ways to segment a stack: choose one")
    if diameter == 0:
        raise ConfigError("--diameter=0 estimates sizes of 2-D images only (as Cellpose's): give the cells' diameter "
                          "in pixels for a stack")
    if masks_in == "graph":
        raise ConfigError("stacks are segmented with the dynamics in Python: use --masks_in=python")
