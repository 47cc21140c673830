"""cellular's exported signatures, all taking images of any size and intensity scale
(normalised and padded in the graph):
- `serving_default`: unit flows, the cell-probability logits and the style vector;
- `normalised`: the same for images already normalised, taken as tiles: without the
  border of zero pixels that whole images get (what tiled prediction sends, after
  adding that border to the whole image);
- `instances`: the cells themselves: `masks` (int32, 0 background, 1..N), with `flows`
  and `cellprob`, images rescaled to the network's cell size by the training cells'
  diameter and Cellpose's dynamics run in the graph (biomodels.ops.graph_masks) with the
  run's thresholds;
- `masks`: only the masks, with a diameter and thresholds per image (`diameter` <= 0:
  the training cells'), what `predict` asks a server for, so only masks travel.
Also the warm-up inputs and the bioimage.io description and output."""

import numpy as np

from biomodels.ops.cellpose_parts import FLOW_SCALE, map_part
from biomodels.tasks.cellular.config import IMAGE_BORDER, mask_thresholds, size_multiple
from biomodels.tasks.cellular.data import preprocess
from biomodels.tasks.cellular.image_maps import FLOW_STEPS


def serving_functions(model, config, calibration=None):
    import tensorflow as tf

    run = network_runner(model, config)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images")])
    def serve(images):
        return run(preprocess(images))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images")])
    def normalised(images):
        return run(images, border=0)

    training_diameter = float((calibration or {}).get("training_diameter") or config.diameter_mean)
    return {"serving_default": serve, "normalised": normalised, **mask_signatures(run, config, training_diameter)}


def network_runner(model, config):
    """run(normalised images, border) -> {"flows", "cellprob", "style"}: the network on
    normalised images; whole images get a `border` of zero pixels around them (tiles of
    one get 0: their edges are not the image's)."""
    import tensorflow as tf

    from biomodels.ops.padding import pad_to_multiple

    multiple = size_multiple(config)
    network = model.with_style()
    channels = len(config.channels)

    def run(x, border=IMAGE_BORDER):
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        # exactly the network's channels: extra ones dropped, missing ones zero
        x = tf.pad(x, [[0, 0], [border, border], [border, border], [0, tf.maximum(channels - tf.shape(x)[3], 0)]])
        x = pad_to_multiple(x[..., :channels], multiple, axes=(1, 2))
        maps, style = network(x, training=False)
        maps = tf.cast(maps, tf.float32)[:, border:border + height, border:border + width]
        return {"flows": map_part(maps, "flows") / FLOW_SCALE, "cellprob": map_part(maps, "cellprob"), "style": tf.cast(style, tf.float32)}

    return run


def mask_signatures(run, config, training_diameter):
    """The `instances` and `masks` signatures: images rescaled to the network's cell size,
    `run` (network_runner's), and Cellpose's dynamics in the graph."""
    import tensorflow as tf

    from biomodels.ops import graph_masks

    def maps_at_cell_size(x, diameter):
        """[B, H, W, 3] maps of normalised images, run with cells rescaled from
        `diameter` to the network's (as predict's tiled path does, in one piece)."""
        size = tf.shape(x)[1:3]
        scale = config.diameter_mean / diameter
        scaled = tf.maximum(8, tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32))
        rescale = tf.abs(scale - 1.0) > 1e-3
        x = tf.cond(rescale, lambda: tf.image.resize(x, scaled, method="bilinear"), lambda: x)
        outputs = run(x)
        maps = tf.concat([outputs["flows"], outputs["cellprob"][..., tf.newaxis]], axis=-1)
        return tf.cond(rescale, lambda: tf.image.resize(maps, size, method="bilinear"), lambda: maps)

    def masks_of(maps, diameter, flow_threshold, cellprob_threshold, min_size):
        # flow steps as image_maps.flow_steps: FLOW_STEPS at the network's diameter, scaled with the cells'
        steps = tf.maximum(1, tf.cast(tf.floor(FLOW_STEPS * diameter / config.diameter_mean), tf.int32))
        return graph_masks.masks_from_flows(map_part(maps, "flows"), map_part(maps, "cellprob"), flow_threshold,
                                           cellprob_threshold, min_size, niter=steps)

    # no AutoGraph: the loops are explicit TensorFlow ones, and converting them took seconds
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images")], autograph=False)
    def instances(images):
        maps = maps_at_cell_size(preprocess(images), tf.constant(training_diameter))
        masks = tf.map_fn(lambda m: masks_of(m, training_diameter, config.flow_threshold, config.cellprob_threshold,
                                             config.min_size),
                          maps, fn_output_signature=tf.TensorSpec([None, None], tf.int32))
        return {"masks": masks, "flows": map_part(maps, "flows"), "cellprob": map_part(maps, "cellprob")}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images"),
                                  tf.TensorSpec([None], tf.float32, name="diameter"),
                                  tf.TensorSpec([None], tf.float32, name="flow_threshold"),
                                  tf.TensorSpec([None], tf.float32, name="cellprob_threshold"),
                                  tf.TensorSpec([None], tf.float32, name="min_size")], autograph=False)
    def masks(images, diameter, flow_threshold, cellprob_threshold, min_size):
        def one(item):
            image, diameter, flow_threshold, cellprob_threshold, min_size = item
            diameter = tf.where(diameter > 0, diameter, training_diameter)
            maps = maps_at_cell_size(preprocess(image[tf.newaxis]), diameter)[0]
            return masks_of(maps, diameter, flow_threshold, cellprob_threshold, min_size)

        return {"masks": tf.map_fn(one, (images, diameter, flow_threshold, cellprob_threshold, min_size),
                                   fn_output_signature=tf.TensorSpec([None, None], tf.int32))}

    return {"instances": instances, "masks": masks}


def warmup_inputs(config):
    rng = np.random.default_rng(0)
    shape = (config.crop_size, config.crop_size, len(config.channels))

    def images(count):
        return rng.uniform(0, 1000, size=(count, *shape)).astype(np.float32)

    options = {"diameter": np.zeros(1, np.float32), "flow_threshold": np.full(1, config.flow_threshold, np.float32),
               "cellprob_threshold": np.full(1, config.cellprob_threshold, np.float32),
               "min_size": np.full(1, config.min_size, np.float32)}
    return ([("serving_default", {"images": images(n)}) for n in (1, 4)]
            + [("instances", {"images": images(1)}), ("masks", {"images": images(1), **options})])


def bioimageio_description(config, pixel_size=None):
    from biomodels.export.bioimageio import space_axes

    multiple = size_multiple(config)
    like_input = space_axes("micrometer", pixel_size, like="images")
    names = ["cytoplasm", "nucleus"][:len(config.channels)]
    return {
        "name": "biomodels cellular Cellpose network",
        "description": "Cellpose's CPnet: flows to each cell's centre and a cell-probability logit (channels "
                       "dY, dX, cellprob), from which biomodels.ops.flows.masks_from_flows builds instance masks.",
        "tags": ["cell-segmentation", "instance-segmentation", "cellpose", "fluorescence", "2d", "tensorflow", "biomodels"],
        "cite": [
            {"text": "Stringer et al., Cellpose: a generalist algorithm for cellular segmentation, Nature Methods 18, "
                     "100-106 (2021)", "doi": "10.1038/s41592-020-01018-x"},
            {"text": "Al Outa et al., CELLULAR, a cell autophagy imaging dataset, Scientific Data 10 (2023)",
             "doi": "10.1038/s41597-023-02687-x"},
        ],
        "inputs": [{
            "id": "images", "description": "fluorescence image, cytoplasm (and nucleus) channel, any intensity scale",
            "axes": [{"type": "batch"}, *space_axes("micrometer", pixel_size, minimum=multiple, step=multiple),
                     {"type": "channel", "channel_names": names}],
            "preprocessing": [{"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": 1.0,
                                                               "max_percentile": 99.0}}],
        }],
        "outputs": [{
            "id": "masks",
            "description": "instance labels (0: background) by Cellpose's flow dynamics (needs Cellpose) from the "
                           "network's flows and cell probability",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["labels"]}, *like_input],
            "data": {"type": "uint16"},
            "postprocessing": [{"id": "cellpose_flow_dynamics", "kwargs": {
                "cellprob_threshold": float(config.cellprob_threshold), "flow_threshold": float(config.flow_threshold),
                "do_3D": False, "min_size": int(config.min_size), "output_dtype": "uint16"}}],
        }],
    }


def bioimageio_output(outputs):
    """The package's network answers one tensor [batch, 3, height, width]: 5 × the unit
    flows (dY, dX) and the cell-probability logit, Cellpose's own output, which the
    package's cellpose_flow_dynamics turns into instance labels."""
    import tensorflow as tf

    maps = tf.concat([FLOW_SCALE * outputs["flows"], outputs["cellprob"][..., tf.newaxis]], axis=-1)
    return tf.transpose(maps, [0, 3, 1, 2])


#: the synthetic images' cell diameter in pixels, about (cell_labels' radii 11-19)
SYNTHETIC_DIAMETER = 30.0


def bioimageio_postprocessing(output, config):
    """What the package's cellpose_flow_dynamics makes of the network's output [batch, 3,
    height, width] (bioimageio_output), for its test tensor: each image's masks
    (ops.flows.masks_from_flows with the run's thresholds) numbered in the order their
    first pixels come in raster order, as Cellpose numbers them; uint16 [batch, 1,
    height, width]."""
    from biomodels.ops.flows import masks_from_flows

    labels = []
    for maps in np.asarray(output, np.float32):
        masks = masks_from_flows(maps[:2] / FLOW_SCALE, maps[2], **mask_thresholds(config))
        labels.append(numbered_in_raster_order(masks))
    return np.stack(labels)[:, np.newaxis].astype(np.uint16)


def numbered_in_raster_order(masks):
    """Labels renumbered 1..N in the order of their first pixels in raster order."""
    ids, first = np.unique(masks.reshape(-1), return_index=True)
    order = ids[ids > 0][np.argsort(first[ids > 0])]
    lookup = np.zeros(int(masks.max()) + 1, np.int64)
    lookup[order] = np.arange(1, len(order) + 1)
    return lookup[masks]


def bioimageio_test_input(config):
    """A synthetic cell image of the training crop's size, its cells of the network's
    diameter: the package's test output must show cells (bioimage.io's validator refuses
    one of zeros)."""
    from biomodels.pipelines.synthetic.cellular import CELLS_PER_PIXEL, cell_labels, render

    rng = np.random.default_rng(0)
    size, scale = config.crop_size, config.diameter_mean / SYNTHETIC_DIAMETER
    count = max(3, round(CELLS_PER_PIXEL * size * size / scale ** 2))
    labels, centres, _ = cell_labels(rng, (size, size), count, radius_range=(11.0 * scale, 19.0 * scale))
    image = render(rng, labels, centres, set())[..., :len(config.channels)]
    return "images", (image * 60000 / image.max())[np.newaxis].astype(np.float32)
