"""From a cell image to its instance masks, as Cellpose's `eval` does: the image's
channels chosen and normalised, rescaled so its cells match the network's diameter,
given a border and run in overlapping tiles, the flows followed (numba) or, through the
model's `masks` signature, the whole dynamics run in the graph (what a server answers).
`outputs` writes these results to files; `metrics` scores them."""

import dataclasses
import os

import numpy as np

from biomodels.errors import ConfigError, InputError
from biomodels.ops.cellpose_parts import map_part
from biomodels.study_model import StudyModel, is_path
from biomodels.tasks.base import comma_numbers
from biomodels.tasks.cellular import data, pretrained
from biomodels.tasks.cellular.image_maps import Segmentation, flow_steps, network_maps


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to segment, resolved from predict's options, the run's configuration and its
    calibration: channels, diameter, masks_from_flows' thresholds, where the dynamics run,
    and the tiling."""

    channels: tuple
    gray: bool
    diameter: float
    diameter_mean: float
    thresholds: dict
    in_graph: bool
    tile: int  # None: planned (image_maps.network_tiles)
    overlap: int
    batch_size: int
    #: the size model that estimates `diameter` for each image when it is 0 (sizes.read_size_model's)
    size_model: dict = None
    #: stacks (stacks.segment_stack): in 3-D, or each slice in 2-D linked at this IoU (0: neither)
    do_3D: bool = False
    stitch_threshold: float = 0.0
    #: the Z spacing over the pixel size; None: the stack's own (stacks.Stack.anisotropy), else 1
    anisotropy: float = None

    @property
    def for_stacks(self):
        return self.do_3D or self.stitch_threshold > 0


def resolve_settings(predictor, config, options):
    """The `Settings` for `predictor` (a Predictor) of a run trained with `config` under
    predict's `options` (every one of the task's predict options, by name)."""
    estimate = options["diameter"] == 0
    for_stacks = options["do_3D"] or options["stitch_threshold"]
    if for_stacks:
        from biomodels.tasks.cellular.stacks import check_stack_settings

        check_stack_settings(options["do_3D"], options["stitch_threshold"], options["diameter"], options["masks_in"])
    diameter = 0.0 if estimate else (options["diameter"] or predictor.calibration.get("training_diameter")
                                     or config.diameter_mean)
    size_model = predictor.calibration.get("size_model")
    if estimate and not size_model and pretrained.is_named(predictor.source):
        size_model = pretrained.size_model(predictor.source)
    if estimate and size_model:
        from biomodels.tasks.cellular.sizes import checked

        size_model = checked(size_model, predictor.source)
    if estimate and not size_model:
        raise ConfigError(f"--diameter=0 estimates each image's cell size with a size model, and {predictor.source} has "
                          "none (Cellpose publishes size models for cyto3, cyto2, cyto and nuclei)")
    thresholds = {name: options[name] if options[name] is not None else getattr(config, name)
                  for name in ("flow_threshold", "cellprob_threshold", "min_size")}
    thresholds["min_size"] = int(thresholds["min_size"])
    in_graph = (options["masks_in"] or ("graph" if predictor.remote and not (estimate or for_stacks) else "python")) == "graph"
    if in_graph and estimate:
        raise ConfigError("--diameter=0 estimates sizes here, with the network's style: use --masks_in=python")
    if in_graph and "masks" not in predictor.signatures:
        raise InputError(predictor.source, "has no `masks` signature (exported before biomodels computed masks in the "
                                           "graph): export the run again, or use --masks_in=python")
    return Settings(channels=parse_channels(options["channels"], config.channels),
                    gray=config.gray and not options["channels"], diameter=float(diameter),
                    diameter_mean=float(config.diameter_mean), thresholds=thresholds, in_graph=in_graph,
                    tile=options["tile"], overlap=options["overlap"], batch_size=options["batch_size"],
                    size_model=size_model, do_3D=bool(options["do_3D"]), stitch_threshold=options["stitch_threshold"] or 0.0,
                    anisotropy=options["anisotropy"])


def segment_image(predictor, raw, settings, image=None):
    """The `Segmentation` of one image [H, W, C] as read, its channels chosen already
    (`data.cell_channels`); `image` is `raw` normalised (`data.normalise`), when the
    caller has it already."""
    if settings.in_graph:
        return Segmentation(masks=segment_in_graph(predictor, raw, settings.diameter, settings.thresholds),
                            flows=None, cellprob=None, diameter=settings.diameter)
    normalised = lambda tiles: predictor("normalised", images=np.ascontiguousarray(tiles, np.float32))  # noqa: E731
    image = data.normalise(raw) if image is None else image
    if settings.diameter == 0:
        settings = dataclasses.replace(settings, diameter=estimate_diameter(normalised, image, settings)[0])
    masks, maps = segment(normalised, image, settings.diameter_mean / settings.diameter,
                          settings.thresholds, tile=settings.tile, overlap=settings.overlap,
                          batch_size=settings.batch_size)
    return Segmentation(masks=masks, flows=np.ascontiguousarray(map_part(maps, "flows").transpose(2, 0, 1)),
                        cellprob=np.ascontiguousarray(map_part(maps, "cellprob")), diameter=settings.diameter)


def estimate_diameter(normalised, image, settings):
    """(diameter, diameter from the style alone) of a normalised image, as Cellpose's
    `SizeModel.eval`: the size model's regression on the image's style, then the median
    diameter of the masks found (with Cellpose's default thresholds, as it finds them)
    with the image rescaled by it; the size model's diam_mean when they give nothing."""
    from biomodels.tasks.cellular import sizes

    size_model = settings.size_model
    by_style = sizes.style_diameter(sizes.image_style(normalised, image), size_model)
    masks, _ = segment(normalised, image, size_model["diam_mean"] / by_style, sizes.CELLPOSE_THRESHOLDS,
                       tile=settings.tile, overlap=settings.overlap, batch_size=settings.batch_size)
    return sizes.median_diameter(masks) or size_model["diam_mean"], by_style


def segment(normalised, image, scale, thresholds, *, tile, overlap, batch_size):
    """(instance masks, maps [H, W, 3]) of one normalised image through `normalised`
    (see `network_maps`); `thresholds` are masks_from_flows' flow_threshold,
    cellprob_threshold and min_size."""
    from biomodels.ops.flows import masks_from_flows

    maps = network_maps(normalised, image, scale, tile=tile, overlap=overlap, batch_size=batch_size)
    masks = masks_from_flows(map_part(maps, "flows").transpose(2, 0, 1), map_part(maps, "cellprob"), **thresholds,
                             niter=flow_steps(scale))
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


def parse_diameter(value):
    """A diameter in pixels: 0 (estimated for each image) or at least 1."""
    if 0 < value < 1:
        raise ConfigError(f"diameter={value:g}: must be 0 (estimated for each image) or at least 1")
    return float(value)


def parse_masks_in(text):
    if text not in ("graph", "python"):
        raise ConfigError(f"--masks_in={text}: expected graph or python")
    return text


def parse_channels(text, default):
    """(cytoplasm, nucleus) channel indices from '0,1' or '0'; `default` for None."""
    if not text:
        return tuple(default)
    channels = comma_numbers(text, int)
    if not 1 <= len(channels) <= 2 or min(channels) < 0:
        raise ConfigError(f"--channels={text}: expected one or two channel indices from 0, such as 0,1")
    return channels


def cpnet_config(task, model):
    """The configuration of a CellposeNet converted from a Cellpose checkpoint: its
    widths, channels and diameter are the checkpoint's, the rest the paper preset."""
    return dataclasses.replace(task.presets()["paper"], nbase=tuple(model.nbase), channels=(0, 1)[:model.nchan],
                               diameter_mean=model.diam_mean)  # Cellpose's CPnets take two channels


class CellularModel(StudyModel):
    """A cellular model: Cellpose's flow network, cells segmented as Cellpose's `eval` does.

    `predict(data, **options)` takes one image ([H, W], [H, W, C] or ImageJ's [C, H, W],
    any intensity scale) or the path of a TIFF or PNG image, and the options of
    `python -m biomodels.predict --task=cellular` (diameter, channels, flow_threshold,
    cellprob_threshold, min_size, masks_in, tile, overlap, batch_size, do_3D,
    anisotropy, stitch_threshold). It answers a `Segmentation`. With do_3D=True or
    stitch_threshold > 0 it takes a Z-stack ([Z, Y, X], [Z, Y, X, C], ImageJ's
    [Z, C, Y, X], or a TIFF or OME-Zarr stack) and answers 3-D masks (stacks).

    Example:
        >>> model = biomodels.load(cellular_run)
        >>> image = np.random.default_rng(0).uniform(0, 255, (64, 80))
        >>> result = model.predict(image, diameter=20, flow_threshold=0.8)
        >>> result.masks.shape, result.flows.shape, result.cellprob.shape, result.diameter
        ((64, 80), (2, 64, 80), (64, 80), 20.0)
    """

    def predict(self, image, **options):
        chosen = resolve_settings(self.predictor, self.config, self.options(options))
        if chosen.for_stacks:
            return self.predict_stack(image, chosen)
        if is_path(image):
            raw = data.read_cell_image(os.fspath(image), chosen.channels, chosen.gray)
        else:
            raw = data.cell_channels(image, chosen.channels, chosen.gray)
        return segment_image(self.predictor, raw, chosen)

    def predict_stack(self, image, settings):
        """The Segmentation of a Z-stack (a path, or an array (Z, Y, X), (Z, Y, X, C) or
        ImageJ's (Z, C, Y, X)) with do_3D or stitch_threshold."""
        from biomodels.tasks.cellular import stacks

        if is_path(image):
            stack = stacks.read_stack(os.fspath(image), settings.channels, settings.gray)
        else:
            image = np.asarray(image)
            stack = stacks.Stack(stacks.stack_channels(image, stacks.array_axes(image.shape), settings.channels,
                                                       settings.gray))
        return stacks.segment_stack(self.predictor, stack.image, stacks.with_anisotropy(settings, stack))
