"""What the cellular task writes for people: the files of `biomodels.predict`
(NAME_cp_masks.tif, NAME_cp_flows.tif, NAME_cp_output.png) from `inference`'s
segmentations, and the images shown in TensorBoard.
"""

import logging
import os

import numpy as np

from biomodels.ops.cellpose_parts import FLOW_SCALE, map_part, target_part
from biomodels.pipelines import image_regions, ome_zarr, readers
from biomodels.tasks.cellular import data, inference, stacks

log = logging.getLogger(__name__)


def flow_colours(flows):
    """uint8 RGB [H, W, 3] of flows (2, H, W): hue from the direction, brightness from the length."""
    dy, dx = flows
    angle = np.arctan2(dy, dx)
    magnitude = np.clip(np.hypot(dy, dx), 0, 1)
    rgb = np.stack([(np.cos(angle + shift) + 1) / 2 for shift in (0, 2 * np.pi / 3, 4 * np.pi / 3)], axis=-1)
    return (rgb * magnitude[..., np.newaxis] * 255).astype(np.uint8)


def outlines(image, masks):
    """uint8 RGB [H, W, 3]: the first channel in gray with the masks' outlines in red."""
    grey = np.clip(image[..., 0], 0, 1)
    rgb = np.repeat((grey * 255).astype(np.uint8)[..., np.newaxis], 3, axis=-1)
    padded = np.pad(masks, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    edge = np.zeros(masks.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy:dy + masks.shape[0], dx:dx + masks.shape[1]] != centre
    rgb[edge & (masks > 0)] = (255, 0, 0)
    return rgb


#: what predict writes beside each image's name: Cellpose's names for predictions, which
#: its folder readers never take for images, training masks (NAME_masks) or flows (NAME_flows)
OUTPUT_NAMES = {"masks": "_cp_masks.tif", "flows": "_cp_flows.tif", "outlines": "_cp_output.png"}
#: the masks of an OME-Zarr input (and of any input segmented in blocks)
ZARR_MASKS = "_cp_masks.zarr"
FLOW_CHANNELS = ("dY", "dX", "cellprob")


def write_masks(path, masks, voxel_size=None, unit=None):
    """Instance labels (an image YX or a stack ZYX) as a 16-bit ImageJ TIFF, a stack's
    with its voxel size (z, y, x) in `unit`; beyond 65535 cells, 32-bit as Cellpose does
    (ImageJ's TIFF does not take it)."""
    if masks.max() < 2**16:
        readers.write_imagej_tiff(path, masks.astype(np.uint16), "ZYX" if masks.ndim == 3 else "YX",
                                  voxel_size=voxel_size, unit=unit)
    else:
        readers.write_tiff(path, masks.astype(np.uint32))


def predict_images(predictor, config, input_path, output_dir, options):
    """Segment every image under `input_path`, one at a time, with `predictor` of a run
    trained with `config`; write NAME_cp_masks.tif (uint16 labels, as Cellpose names its
    predicted masks), NAME_cp_flows.tif (float32 [3, H, W]: unit dY, dX and the
    cell-probability logit, an ImageJ hyperstack; not with masks computed in the graph,
    which answers masks alone) and NAME_cp_output.png (the outlines over the image);
    returns the paths written. Cellpose reads none of them as an image or as training
    masks or flows of a folder (its NAME_masks and NAME_flows). Z-stacks, with do_3D or
    stitch_threshold, get 3-D masks and flows and no outlines (stacks)."""
    from biomodels.report import progress_bar, say

    paths = data.predict_inputs(input_path)
    settings = inference.resolve_settings(predictor, config, options)
    written = []
    bar = progress_bar(len(paths), "images")
    for done, path in enumerate(paths, start=1):  # one image in memory at a time
        zarr_input = ome_zarr.Image(path) if ome_zarr.is_ome_zarr(path) else None
        stem = os.path.join(output_dir, image_regions.output_name(path, ""))
        if settings.for_stacks:
            stack = stacks.read_stack(path, settings.channels, settings.gray)
            result = stacks.segment_stack(predictor, stack.image, stacks.with_anisotropy(settings, stack))
            written += write_stack_segmentation(stem, result, stack, like=zarr_input)
        else:
            raw = data.read_cell_image(path, settings.channels, settings.gray)
            image = data.normalise(raw)  # once, for the network and the outlines
            result = inference.segment_image(predictor, raw, settings, image)
            written += write_segmentation(stem, image, result, like=zarr_input)
        log.info("%s: %d cells", path, int(result.masks.max()))
        if options["diameter"] == 0:
            say(f"{os.path.basename(path)}: cell diameter {result.diameter:.1f} pixels (estimated), "
                f"{int(result.masks.max())} cells")
        bar.update(done)
    return written


def write_segmentation(stem, image, result, like=None):
    """STEM_cp_masks.tif, STEM_cp_output.png and, when the result has flows,
    STEM_cp_flows.tif of one image's `Segmentation` (`image`: the image normalised, under the
    outlines); returns their paths. For an OME-Zarr input (`like`, its `ome_zarr.Image`)
    the masks are STEM_cp_masks.zarr of its version with its pixel size."""
    names = {kind: f"{stem}{suffix}" for kind, suffix in OUTPUT_NAMES.items()}
    if like is not None:
        names["masks"] = f"{stem}{ZARR_MASKS}"
    if result.flows is None:
        del names["flows"]
    else:
        maps = np.concatenate([result.flows, result.cellprob[np.newaxis]]).astype(np.float32)
        readers.write_imagej_tiff(names["flows"], np.ascontiguousarray(maps), "CYX", labels=FLOW_CHANNELS)
    if like is not None:
        dtype = np.uint16 if result.masks.max() < 2 ** 16 else np.uint32
        ome_zarr.write_image(names["masks"], result.masks.astype(dtype), "yx", like.voxel_size("yx"),
                             origin=like.origin("yx"), version=like.version)
    else:
        write_masks(names["masks"], result.masks)
    readers.write_png(names["outlines"], outlines(image, result.masks))
    return list(names.values())


def write_stack_segmentation(stem, result, stack, like=None):
    """STEM_cp_masks.tif (uint16 ImageJ stack ZYX, the voxel size kept) and
    STEM_cp_flows.tif (float32 ImageJ hyperstack ZCYX: the flows and the logit) of a
    stack's Segmentation; for an OME-Zarr input (`like`, its ome_zarr.Image) the masks
    are STEM_cp_masks.zarr of its version and voxel size. Returns the paths."""
    flows_path = f"{stem}{OUTPUT_NAMES['flows']}"
    maps = np.concatenate([result.flows, result.cellprob[np.newaxis]]).transpose(1, 0, 2, 3)
    names = FLOW_CHANNELS if len(result.flows) == 2 else ("dZ", *FLOW_CHANNELS)
    readers.write_imagej_tiff(flows_path, np.ascontiguousarray(maps, np.float32), "ZCYX", labels=names * len(maps),
                              voxel_size=stack.voxel_size, unit=stack.unit)
    if like is not None:
        masks_path = f"{stem}{ZARR_MASKS}"
        ome_zarr.write_image(masks_path, result.masks, "zyx", like.voxel_size("zyx"), origin=like.origin("zyx"),
                             version=like.version)
    else:
        masks_path = f"{stem}{OUTPUT_NAMES['masks']}"
        write_masks(masks_path, result.masks, stack.voxel_size, stack.unit)
    return [masks_path, flows_path]


def summary_images(model, inputs, targets):
    maps = np.asarray(model(inputs, training=False))
    images = np.clip(np.asarray(inputs)[..., 0], 0, 1)
    grey = (np.repeat(images[..., np.newaxis], 3, axis=-1) * 255).astype(np.uint8)
    targets = np.asarray(targets)
    targets = np.where(target_part(targets, "label")[..., np.newaxis] >= 0, targets, 0.0)  # padding: background
    probability = 1 / (1 + np.exp(-map_part(maps, "cellprob")))
    return {
        "input": grey,
        "true_flows": np.stack([flow_colours(target_part(t, "flows").transpose(2, 0, 1)) for t in targets]),
        "predicted_flows": np.stack([flow_colours(map_part(m, "flows").transpose(2, 0, 1) / FLOW_SCALE) for m in maps]),
        "cell_probability": (np.repeat(probability[..., np.newaxis], 3, axis=-1) * 255).astype(np.uint8),
    }
