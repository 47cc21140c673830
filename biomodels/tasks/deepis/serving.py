"""deepis's exported signature: `serving_default` takes RI volumes of any size (padded to
the network's multiple in the graph) and answers the signed distance and the 0/1/2 labels;
warm-up inputs."""

import numpy as np

from biomodels.errors import ConfigError
from biomodels.tasks.deepis.data import preprocess


def serving_functions(model, config):
    import tensorflow as tf

    from biomodels.ops.padding import pad_to_multiple

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 1], tf.float32, name="volumes")])
    def serve(volumes):
        shape = tf.shape(volumes)
        x = pad_to_multiple(preprocess(volumes, config), model.size_multiple, axes=(1, 2, 3))  # 0: the medium after normalising
        distance = tf.cast(model(x, training=False), tf.float32)[:, :shape[1], :shape[2], :shape[3], 0]
        labels = tf.where(distance > 0.5, 1, tf.where(distance < -0.5, 2, 0))
        return {"distance": distance, "labels": tf.cast(labels, tf.int32)}

    return {"serving_default": serve}


def warmup_inputs(config):
    rng = np.random.default_rng(0)
    volume = config.medium_index + 0.01 * rng.normal(size=(1, *config.crop, 1))
    return [("serving_default", {"volumes": volume.astype(np.float32)})]


def bioimageio_description(config, pixel_size=None):
    raise ConfigError("deepis is exported for TF Serving; a bioimage.io package of it is not made yet")
