"""ccp's exported signature: `serving_default` takes NaN-padded traces of the model's
channels (clathrin, or clathrin and auxilin) and their lengths (the traces model) or the
11 features (the features model) and answers the probability that each track is
auxilin-positive; warm-up inputs; which model a predictor serves."""

import numpy as np

from biomodels.errors import ConfigError, InputError
from biomodels.ops.track_features import NUM_FEATURES
from biomodels.tasks.ccp.config import CHANNELS
from biomodels.tasks.ccp.data import preprocess


def serving_functions(model, config, calibration=None):
    import tensorflow as tf

    if config.model == "features":
        @tf.function(input_signature=[tf.TensorSpec([None, NUM_FEATURES], tf.float32, name="features")])
        def serve_features(features):
            probability = model({"features": preprocess(features)}, training=False)
            return {"probability": tf.reshape(tf.cast(probability, tf.float32), [-1])}

        return {"serving_default": serve_features}

    # the model's own width: a run trained before `trace_channels` existed reads both
    width = {tensor.name: tensor for tensor in model.inputs}["traces"].shape[-1]

    @tf.function(input_signature=[tf.TensorSpec([None, None, width], tf.float32, name="traces"),
                                  tf.TensorSpec([None], tf.int32, name="lengths")])
    def serve_traces(traces, lengths):
        probability = model({"traces": preprocess(traces), "lengths": lengths}, training=False)
        return {"probability": tf.reshape(tf.cast(probability, tf.float32), [-1])}

    return {"serving_default": serve_traces}


def warmup_inputs(config):
    rng = np.random.default_rng(0)
    if config.model == "features":
        return [("serving_default", {"features": rng.normal(size=(n, NUM_FEATURES)).astype(np.float32)}) for n in (1, 32)]
    return [("serving_default", {"traces": rng.normal(size=(n, frames, len(config.trace_channels))).astype(np.float32),
                                 "lengths": np.full(n, frames, np.int32)}) for n, frames in ((1, 40), (32, 120))]


def bioimageio_description(config, pixel_size=None):
    raise ConfigError("the ccp model classifies intensity traces, not images: bioimage.io packages are for "
                      "image models, so export it for TF Serving without --bioimageio")


def served_trace_channels(predictor):
    """The trace channels the served traces model reads: from the training configuration
    when the predictor has it, else from the width of its `traces` input (a model
    trained before the choice existed, or served remotely: 1 clathrin, 2 both); a width
    the signature does not state is one line, never a guess."""
    channels = predictor.config.get("trace_channels")
    if channels:
        return tuple(channels)
    shape = predictor.signatures["serving_default"].inputs["traces"].shape
    width = shape[-1] if shape else None
    if width not in (1, 2):
        stated = "no width" if width is None else f"width {width}"
        raise InputError(predictor.source, f"its `traces` input has {stated}: its trace channels (1: clathrin, "
                                           "2: clathrin and auxilin) cannot be told; serve a biomodels export of ccp")
    return CHANNELS[:width]


def served_model_kind(predictor):
    """'features' or 'traces': from the training configuration when the predictor has
    it, else from the inputs of its serving_default signature."""
    kind = predictor.config.get("model")
    if kind:
        return kind
    return "features" if "features" in predictor.signatures["serving_default"].inputs else "traces"
