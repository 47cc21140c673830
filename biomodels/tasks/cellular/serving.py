"""cellular's exported signatures: `serving_default` takes images of any size and
intensity scale (normalised and padded in the graph) and answers unit flows, the
cell-probability logits and the style vector; `normalised` does the same for images
already normalised (what tiled prediction sends); warm-up inputs; the bioimage.io
description and output."""

import numpy as np

from biomodels.tasks.cellular.config import size_multiple
from biomodels.tasks.cellular.data import preprocess


def serving_functions(model, config):
    import tensorflow as tf

    from biomodels.ops.padding import pad_to_multiple

    multiple = size_multiple(config)
    network = model.with_style()
    channels = len(config.channels)

    def run(x):
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        # exactly the network's channels: extra ones dropped, missing ones zero
        x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, tf.maximum(channels - tf.shape(x)[3], 0)]])[..., :channels]
        x = pad_to_multiple(x, multiple, axes=(1, 2))
        maps, style = network(x, training=False)
        maps = tf.cast(maps, tf.float32)[:, :height, :width]
        return {"flows": maps[..., :2] / 5.0, "cellprob": maps[..., 2], "style": tf.cast(style, tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images")])
    def serve(images):
        return run(preprocess(images))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images")])
    def normalised(images):
        return run(images)

    return {"serving_default": serve, "normalised": normalised}


def warmup_inputs(config):
    rng = np.random.default_rng(0)
    shape = (config.crop_size, config.crop_size, len(config.channels))
    return [("serving_default", {"images": rng.uniform(0, 1000, size=(n, *shape)).astype(np.float32)})
            for n in (1, 4)]


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
        "outputs": [
            {"id": "maps", "description": "unit flows towards each cell's centre (dY, dX) and the cell-probability "
                                          "logit, the channels of Cellpose's own network output",
             "axes": [{"type": "batch"}, *like_input, {"type": "channel", "channel_names": ["dy", "dx", "cellprob"]}]},
        ],
    }


def bioimageio_output(outputs):
    """The package answers one tensor, [dY, dX, cell-probability logit] per pixel."""
    import tensorflow as tf

    return tf.concat([outputs["flows"], outputs["cellprob"][..., tf.newaxis]], axis=-1)
