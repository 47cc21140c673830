"""deepis's exported signature: `serving_default` takes RI volumes of any size (padded to
the network's multiple in the graph) and answers the signed distance, the 0/1/2 labels
and the immunological synapse (uint8: where the CAR-T and target masks, each dilated by
a ball of 2 voxels, overlap; ops.distance.synapse_mask in the graph); warm-up inputs;
the bioimage.io description, test input and output."""

import numpy as np

from biomodels.tasks.deepis.data import preprocess


def serving_functions(model, config, calibration=None):
    import tensorflow as tf

    from biomodels.ops.padding import pad_to_multiple

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 1], tf.float32, name="volumes")])
    def serve(volumes):
        shape = tf.shape(volumes)
        x = pad_to_multiple(preprocess(volumes, config), model.size_multiple, axes=(1, 2, 3))  # 0: the medium after normalising
        distance = tf.cast(model(x, training=False), tf.float32)[:, :shape[1], :shape[2], :shape[3], 0]
        labels = tf.where(distance > 0.5, 1, tf.where(distance < -0.5, 2, 0))
        return {"distance": distance, "labels": tf.cast(labels, tf.int32), "synapse": synapse_in_graph(labels)}

    return {"serving_default": serve}


def synapse_in_graph(labels, dilation=2):
    """uint8 [B, Z, Y, X]: 1 where the CAR-T (1) and target (2) masks of `labels`, each
    dilated by a ball of `dilation` voxels, overlap. A binary dilation by a ball is a
    3-D convolution with the ball, zero-padded, above one half."""
    import tensorflow as tf

    from biomodels.ops.distance import ball

    kernel = tf.constant(ball(dilation, 3).astype(np.float32)[..., np.newaxis, np.newaxis])

    def dilated(mask):
        grown = tf.nn.conv3d(tf.cast(mask, tf.float32)[..., tf.newaxis], kernel, [1, 1, 1, 1, 1], "SAME")
        return grown[..., 0] > 0.5

    return tf.cast(dilated(labels == 1) & dilated(labels == 2), tf.uint8)


def warmup_inputs(config):
    rng = np.random.default_rng(0)
    volume = config.medium_index + 0.01 * rng.normal(size=(1, *config.crop, 1))
    return [("serving_default", {"volumes": volume.astype(np.float32)})]


def bioimageio_description(config, pixel_size=None):
    """Space axes in micrometres (the TIFF voxel size of the training volumes)."""
    from biomodels.export.bioimageio import space_axes
    from biomodels.models import DeepISNet

    multiple = DeepISNet.size_multiple
    zyx = ("z", "y", "x")
    return {
        "name": "biomodels deepis ResNet-GCN U-Net",
        "description": "3-D U-Net (ResNet encoder, Global Convolutional Network skips) that maps a refractive-index "
                       "tomogram to a signed distance: positive inside the CAR-T cell, negative inside its target "
                       "cell, zero in the medium, in voxels; |distance| > 0.5 gives the two cells.",
        "tags": ["refractive-index", "holotomography", "immunological-synapse", "instance-segmentation", "3d",
                 "tensorflow", "biomodels"],
        "cite": [{"text": "Lee, Lee, Song et al., DeepIS: deep learning framework for three-dimensional label-free "
                          "tracking of immunological synapses between cells, eLife 9, e49023 (2020)",
                  "doi": "10.7554/eLife.49023"}],
        "inputs": [{
            "id": "volumes", "description": f"refractive index (medium {config.medium_index}); normalised in the model "
                                            f"as (RI - {config.medium_index}) / {config.ri_scale}",
            "axes": [{"type": "batch"}, *space_axes("micrometer", pixel_size, minimum=multiple, step=multiple, ids=zyx),
                     {"type": "channel", "channel_names": ["refractive_index"]}],
        }],
        "outputs": [{"id": "distance", "description": "signed distance in voxels: CAR-T > 0, target < 0, medium 0",
                     "axes": [{"type": "batch"}, *space_axes("micrometer", pixel_size, like="volumes", ids=zyx)]}],
    }


def bioimageio_test_input(config):
    """A synthetic tomogram of a CAR-T cell against its target at the training crop's
    size: on the medium alone the distance would be all but zero, which the validator
    refuses as a test output."""
    from biomodels.pipelines.synthetic import deepis as synthetic

    volume, _ = synthetic.volume(np.random.default_rng(0), tuple(config.crop))
    return "volumes", volume[None, ..., None]


def bioimageio_output(outputs):
    """The package answers the signed distance (the labels are its thresholds)."""
    return outputs["distance"]
