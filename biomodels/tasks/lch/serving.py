"""lch's exported signatures: `encode` (= `serving_default`) from crops of any size to
codes, `decode` from codes to images, and `classify` from crops to the probability of
high metastatic efficiency (when `calibrate` fitted a classifier); warm-up inputs; the
bioimage.io description of the encoder."""

import numpy as np

from biomodels.tasks.lch.config import STUDY_CROP_SIZE, latent_columns
from biomodels.tasks.lch.data import preprocess


def serving_functions(model, config, calibration=None):
    import tensorflow as tf

    from biomodels.ops.latent_classifier import LinearClassifier

    images_spec = tf.TensorSpec([None, None, None, 1], tf.float32, name="images")

    @tf.function(input_signature=[images_spec])
    def encode(images):
        return {"latent": tf.cast(model.encoder(preprocess(images, config), training=False), tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None, config.latent_dim], tf.float32, name="latent")])
    def decode(latent):
        return {"images": tf.cast(model.decoder(latent, training=False), tf.float32)}

    functions = {"serving_default": encode, "encode": encode, "decode": decode}
    if (calibration or {}).get("classifier"):
        classifier = LinearClassifier.from_dict(calibration["classifier"])
        mean, scale = tf.constant(classifier.mean, tf.float32), tf.constant(classifier.scale, tf.float32)
        weights, bias = tf.constant(classifier.weights[:, None], tf.float32), tf.constant(classifier.bias, tf.float32)

        @tf.function(input_signature=[images_spec])
        def classify(images):
            codes = tf.cast(model.encoder(preprocess(images, config), training=False), tf.float32)
            logits = tf.matmul((codes - mean) / scale, weights)[:, 0] + bias
            return {"probability_high": tf.sigmoid(logits)}

        functions["classify"] = classify
    return functions


def warmup_inputs(config):
    rng = np.random.default_rng(0)
    crops = [rng.uniform(0, 1, (n, STUDY_CROP_SIZE, STUDY_CROP_SIZE, 1)).astype(np.float32) for n in (1, 8)]
    inputs = [("serving_default", {"images": crop}) for crop in crops]
    inputs.append(("decode", {"latent": rng.normal(size=(8, config.latent_dim)).astype(np.float32)}))
    return inputs


def bioimageio_description(config, pixel_size=None):
    from biomodels.export.bioimageio import space_axes

    return {
        "name": "biomodels lch adversarial autoencoder encoder",
        "description": "Encoder of an adversarial autoencoder of label-free single-cell images (Live Cell Histology): "
                       f"a {config.latent_dim}-d code per cell whose prior is N(0, I).",
        "tags": ["label-free", "autoencoder", "embedding", "melanoma", "2d", "tensorflow", "biomodels"],
        "cite": [{"text": "Zaritsky, Jamieson et al., Interpretable deep learning uncovers cellular properties in "
                          "label-free live cell images that are predictive of highly metastatic melanoma, "
                          "Cell Systems 12, 733-747 (2021)", "doi": "10.1016/j.cels.2021.05.003"}],
        "inputs": [{
            "id": "images", "description": "a centred single-cell crop, gray in [0, 1] (8-bit / 255), any size; "
                                           "squared, resized, contrast-stretched in the model",
            "axes": [{"type": "batch"}, *space_axes("micrometer", pixel_size, minimum=16, step=1),
                     {"type": "channel", "channel_names": ["gray"]}],
        }],
        "outputs": [{"id": "latent", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": latent_columns(config.latent_dim)}]}],
    }
