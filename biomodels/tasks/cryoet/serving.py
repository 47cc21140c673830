"""cryoet's exported signatures, warm-up inputs, the bioimage.io description and output.

- `serving_default` takes whole slices of any size and intensity scale, standardises
  each to zero mean and unit variance in the graph, and answers per-class probabilities
  and labels;
- `standardised` answers the same for images already standardised with their whole
  tomogram's mean and deviation, as training tiles are: what predict sends, tile by
  tile, so that a tile's result does not depend on the tile's own statistics.
"""

import numpy as np

from biomodels.tasks.cryoet.config import CLASS_NAMES, size_multiple
from biomodels.tasks.cryoet.data import preprocess


def serving_functions(model, config, calibration=None):
    import tensorflow as tf

    from biomodels.ops.padding import pad_to_multiple

    multiple = size_multiple(config)

    def answer(x):
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        # pad with the mean (0), which works for images of any size, even smaller than the padding
        x = pad_to_multiple(x, multiple, axes=(1, 2))
        probabilities = tf.cast(model(x, training=False), tf.float32)[:, :height, :width, :]
        return {"probabilities": probabilities, "labels": tf.argmax(probabilities, axis=-1, output_type=tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="images")])
    def serve(images):
        # standardise before padding, so the padding does not shift the statistics
        return answer(preprocess(images))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="images")])
    def standardised(images):
        return answer(images)

    return {"serving_default": serve, "standardised": standardised}


def warmup_inputs(config):
    rng = np.random.default_rng(0)
    tile = config.tile_size
    return [(name, {"images": rng.normal(size=(n, tile, tile, 1)).astype(np.float32)})
            for name in ("serving_default", "standardised") for n in (1, 4)]


def bioimageio_description(config, pixel_size=None):
    """Space axes in ångström, as MRC voxel sizes are."""
    from biomodels.export.bioimageio import space_axes

    multiple = size_multiple(config)
    like_input = space_axes("angstrom", pixel_size, like="images")
    return {
        "name": "biomodels cryoet U-Net",
        "description": "2-D U-Net that labels cellular cryo-electron tomogram slices: background, microtubule, "
                       "ribosome, double membrane, single membrane, carbon edge.",
        "tags": ["cryo-electron-tomography", "semantic-segmentation", "2d", "tensorflow", "biomodels"],
        "cite": [{"text": "Chen et al., Convolutional neural networks for automated annotation of cellular "
                          "cryo-electron tomograms, Nature Methods 14, 983-985 (2017)", "doi": "10.1038/nmeth.4405"}],
        "inputs": [{
            "id": "images", "description": "tomogram slices, any intensity scale",
            "axes": [{"type": "batch"}, *space_axes("angstrom", pixel_size, minimum=multiple, step=multiple),
                     {"type": "channel", "channel_names": ["density"]}],
            "preprocessing": [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x", "channel"]}}],
        }],
        "outputs": [
            {"id": "probabilities", "description": "per-class probabilities; the label of a pixel is their argmax",
             "axes": [{"type": "batch"}, *like_input, {"type": "channel", "channel_names": list(CLASS_NAMES)}]},
        ],
    }


def bioimageio_output(outputs):
    """The package answers the probabilities (the labels are their argmax)."""
    return outputs["probabilities"]
