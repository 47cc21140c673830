"""From network outputs to what the cellular task writes for people: masks of one image
(rescaled to the network's cell size, tiled, flows followed), the files of
`biomodels.predict` (NAME_masks.tif, NAME_flows.tif, NAME_outlines.png), and the images
shown in TensorBoard.
"""

import logging
import os

import numpy as np

from biomodels.errors import ConfigError, InputError
from biomodels.pipelines import readers
from biomodels.tasks.base import comma_numbers
from biomodels.tasks.cellular import data
from biomodels.tasks.cellular.config import IMAGE_BORDER

log = logging.getLogger(__name__)


def resize(image, height, width):
    """Bilinear resize of [H, W, C] float32 to [height, width, C]."""
    import tensorflow as tf

    return np.asarray(tf.image.resize(image, [height, width], method="bilinear"))


def network_maps(predictor, image, scale, tile=512, overlap=64, batch_size=4):
    """[H, W, 3] (unit dY, dX, cell-probability logit) of a normalised image [H, W, C]:
    resized by `scale` (the network's diameter over the image's), given a border of
    IMAGE_BORDER zero pixels, run in overlapping tiles of at most `tile` pixels through
    the predictor's `normalised` signature, and cropped and resized back."""
    from biomodels.ops.tiling import predict_tiled

    height, width = image.shape[:2]
    if abs(scale - 1.0) > 1e-3:
        image = resize(image, max(8, round(height * scale)), max(8, round(width * scale)))
    border = IMAGE_BORDER
    image = np.pad(image, ((border, border), (border, border), (0, 0)))

    def run(tiles):
        outputs = predictor("normalised", images=np.ascontiguousarray(tiles, np.float32))
        return np.concatenate([outputs["flows"], outputs["cellprob"][..., np.newaxis]], axis=-1)

    tiles = (min(tile + 2 * border, image.shape[0]), min(tile + 2 * border, image.shape[1]))  # the border is extra
    maps = predict_tiled(image, run, tile=tiles, overlap=overlap, batch_size=batch_size)[border:-border, border:-border]
    if maps.shape[:2] != (height, width):
        maps = resize(maps, height, width)
    return maps


def segment(predictor, image, scale, options, thresholds):
    """(instance masks, maps [H, W, 3]) of one normalised image; `thresholds` are
    masks_from_flows' flow_threshold, cellprob_threshold and min_size."""
    from biomodels.ops.flows import masks_from_flows

    maps = network_maps(predictor, image, scale, tile=options.get("tile") or 512, overlap=options.get("overlap", 64),
                        batch_size=options.get("batch_size", 4))
    masks = masks_from_flows(maps[..., :2].transpose(2, 0, 1), maps[..., 2], **thresholds)
    return masks, maps


def segment_in_graph(predictor, image, diameter, thresholds):
    """Instance masks of one image [H, W, C] as read (the graph normalises it) from the
    model's `masks` signature: the network on the whole image and Cellpose's dynamics
    in the graph (ops.graph_masks), so a server answers with masks alone."""
    outputs = predictor("masks", images=image[np.newaxis].astype(np.float32),
                        diameter=np.array([diameter], np.float32),
                        flow_threshold=np.array([thresholds["flow_threshold"] or 0.0], np.float32),
                        cellprob_threshold=np.array([thresholds["cellprob_threshold"]], np.float32),
                        min_size=np.array([thresholds["min_size"]], np.float32))
    return outputs["masks"][0]


def parse_masks_in(text):
    if text not in ("graph", "python"):
        raise ConfigError(f"--masks_in={text}: expected graph or python")
    return text


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


def parse_channels(text, default):
    """(cytoplasm, nucleus) channel indices from '0,1' or '0'; `default` for None."""
    if not text:
        return tuple(default)
    channels = comma_numbers(text, int)
    if not 1 <= len(channels) <= 2 or min(channels) < 0:
        raise ConfigError(f"--channels={text}: expected one or two channel indices from 0, such as 0,1")
    return channels


#: what predict writes beside each image's name: Cellpose's names for predictions, which
#: its folder readers never take for images, training masks (NAME_masks) or flows (NAME_flows)
OUTPUT_NAMES = {"masks": "_cp_masks.tif", "flows": "_cp_flows.tif", "outlines": "_cp_output.png"}
FLOW_CHANNELS = ("dY", "dX", "cellprob")


def write_masks(path, masks):
    """Instance labels as a 16-bit ImageJ TIFF; beyond 65535 cells, 32-bit as Cellpose does."""
    if masks.max() < 2**16:
        readers.write_imagej_tiff(path, masks.astype(np.uint16), "YX")
    else:
        readers.write_tiff(path, masks.astype(np.uint32))


def predict_images(predictor, input_path, output_dir, options):
    """Segment every image under `input_path`, one at a time; write NAME_cp_masks.tif (uint16 labels, as
    Cellpose names its predicted masks), NAME_cp_flows.tif (float32 [3, H, W]: unit dY,
    dX and the cell-probability logit, an ImageJ hyperstack; not with masks computed in
    the graph, which answers masks alone) and NAME_cp_output.png (the outlines over the
    image); returns the paths written. Cellpose reads none of them as
    an image or as training masks or flows of a folder (its NAME_masks and NAME_flows)."""
    from biomodels.report import progress_bar

    config = predictor.config
    paths = [input_path] if os.path.isfile(input_path) else data.image_files(input_path)
    if not paths:
        raise InputError(input_path, "holds no TIFF or PNG images")
    channels = parse_channels(options.get("channels"), config.get("channels", (0, 1)))
    diameter_mean = float(config.get("diameter_mean", 30.0))
    diameter = options.get("diameter") or predictor.calibration.get("training_diameter") or diameter_mean
    if diameter <= 0:
        raise ConfigError(f"--diameter={diameter}: must be positive")
    thresholds = {
        "flow_threshold": _option(options, "flow_threshold", config, 0.4),
        "cellprob_threshold": _option(options, "cellprob_threshold", config, 0.0),
        "min_size": int(_option(options, "min_size", config, 15)),
    }
    in_graph = (options.get("masks_in") or ("graph" if predictor.remote else "python")) == "graph"
    if in_graph and "masks" not in predictor.signatures:
        raise InputError(predictor.source, "has no `masks` signature (exported before biomodels computed masks in the "
                                           "graph): export the run again, or use --masks_in=python")
    written = []
    bar = progress_bar(len(paths), "images")
    for done, path in enumerate(paths, start=1):  # one image in memory at a time
        raw = data.read_cell_image(path, channels, bool(config.get("gray")) and not options.get("channels"))
        image = data.normalise(raw)
        stem = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
        names = {kind: f"{stem}{suffix}" for kind, suffix in OUTPUT_NAMES.items()}
        if in_graph:  # the masks alone: no flows file
            masks = segment_in_graph(predictor, raw, diameter, thresholds)
            del names["flows"]
        else:
            masks, maps = segment(predictor, image, diameter_mean / diameter, options, thresholds)
            readers.write_imagej_tiff(names["flows"], np.ascontiguousarray(maps.transpose(2, 0, 1), np.float32), "CYX",
                                      labels=FLOW_CHANNELS)
        write_masks(names["masks"], masks)
        readers.write_png(names["outlines"], outlines(image, masks))
        written += list(names.values())
        log.info("%s: %d cells", path, int(masks.max()))
        bar.update(done)
    return written


def _option(options, name, config, default):
    value = options.get(name)
    return value if value is not None else config.get(name, default)


def summary_images(model, inputs, targets):
    maps = np.asarray(model(inputs, training=False))
    images = np.clip(np.asarray(inputs)[..., 0], 0, 1)
    grey = (np.repeat(images[..., np.newaxis], 3, axis=-1) * 255).astype(np.uint8)
    targets = np.asarray(targets)
    targets = np.where(targets[..., 3:4] >= 0, targets, 0.0)  # padding shows as background
    return {
        "input": grey,
        "true_flows": np.stack([flow_colours(t[..., :2].transpose(2, 0, 1)) for t in targets]),
        "predicted_flows": np.stack([flow_colours(m[..., :2].transpose(2, 0, 1) / 5) for m in maps]),
        "cell_probability": (np.repeat(1 / (1 + np.exp(-maps[..., 2:3])), 3, axis=-1) * 255).astype(np.uint8),
    }
