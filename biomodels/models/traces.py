"""Classifiers of clathrin-coated-pit tracks.

`TraceFeatureNet` is the study's model: 11 track features, standardised with the
training set's statistics inside the model, then Dense(10) -> Dense(10) -> sigmoid.

`TraceNet` reads the raw clathrin and auxilin traces, of any length from 2 frames up,
padded to a batch and described by their lengths: standardisation per channel, 1-D
convolutions, a bidirectional GRU, masked mean and max pooling, sigmoid. Padding is
masked at every step (convolution inputs are zeroed past each track's end, the GRU skips
padded frames, pooling ignores them), so padding a track never changes its prediction.
"""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="biomodels")
class LengthMask(layers.Layer):
    """Boolean [batch, time] mask from the time axis of `sequences` and `lengths`."""

    def call(self, sequences, lengths):
        steps = ops.arange(ops.shape(sequences)[1], dtype="int32")
        return ops.expand_dims(steps, 0) < ops.expand_dims(ops.cast(lengths, "int32"), 1)

    def compute_output_spec(self, sequences, lengths):
        return keras.KerasTensor(tuple(sequences.shape[:2]), dtype="bool")


@keras.saving.register_keras_serializable(package="biomodels")
class ZeroPadding(layers.Layer):
    """Sets the frames past each sequence's end to zero."""

    def call(self, sequences, valid):
        return sequences * ops.cast(ops.expand_dims(valid, -1), sequences.dtype)


@keras.saving.register_keras_serializable(package="biomodels")
class MaskedMeanMax(layers.Layer):
    """[batch, 2·channels]: mean and maximum over the unmasked frames."""

    def call(self, sequences, valid):
        weights = ops.cast(ops.expand_dims(valid, -1), sequences.dtype)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        mean = ops.sum(sequences * weights, axis=1) / count
        lowest = ops.cast(-1e4, sequences.dtype)  # representable in float16 too
        maximum = ops.max(ops.where(weights > 0, sequences, lowest), axis=1)
        return ops.concatenate([mean, maximum], axis=-1)

    def compute_output_shape(self, sequences_shape, valid_shape):
        return (sequences_shape[0], 2 * sequences_shape[-1])


def _normalization(mean, variance, name):
    return layers.Normalization(mean=list(mean), variance=list(variance), name=name)


@keras.saving.register_keras_serializable(package="biomodels")
class TraceFeatureNet(keras.Model):
    """The study's dense network on the 11 track features."""

    def __init__(self, feature_mean, feature_variance, hidden_units=(10, 10), activation="tanh", **kwargs):
        inputs = keras.Input(shape=(len(feature_mean),), name="features")
        x = _normalization(feature_mean, feature_variance, "standardise")(inputs)
        for index, units in enumerate(hidden_units):
            x = layers.Dense(units, activation=activation, name=f"dense{index + 1}")(x)
        probability = layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
        super().__init__(inputs={"features": inputs}, outputs=probability, **kwargs)
        self.feature_mean = [float(v) for v in feature_mean]
        self.feature_variance = [float(v) for v in feature_variance]
        self.hidden_units = tuple(hidden_units)
        self.activation = activation

    def get_config(self):
        return {"feature_mean": self.feature_mean, "feature_variance": self.feature_variance,
                "hidden_units": list(self.hidden_units), "activation": self.activation,
                "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="biomodels")
class TraceNet(keras.Model):
    """Masked 1-D convolutions and a bidirectional GRU over [batch, time, channels]
    traces with their int32 `lengths`."""

    def __init__(self, channel_mean, channel_variance, *, filters=32, kernel_size=5, conv_layers=2, gru_units=32,
                 dense_units=32, dropout=0.1, **kwargs):
        channels = len(channel_mean)
        traces = keras.Input(shape=(None, channels), name="traces")
        lengths = keras.Input(shape=(), dtype="int32", name="lengths")
        valid = LengthMask(name="mask")(traces, lengths)
        x = _normalization(channel_mean, channel_variance, "standardise")(traces)
        for index in range(conv_layers):
            x = ZeroPadding(name=f"zero_padding{index + 1}")(x, valid)
            x = layers.Conv1D(filters, kernel_size, padding="same", activation="relu", name=f"conv{index + 1}")(x)
        x = ZeroPadding(name=f"zero_padding{conv_layers + 1}")(x, valid)
        recurrent = layers.Bidirectional(layers.GRU(gru_units), name="bigru")(x, mask=valid)
        pooled = MaskedMeanMax(name="pool")(x, valid)
        x = layers.Concatenate(name="summary")([recurrent, pooled])
        if dropout:
            x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(dense_units, activation="relu", name="dense")(x)
        probability = layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
        super().__init__(inputs={"traces": traces, "lengths": lengths}, outputs=probability, **kwargs)
        self.channel_mean = [float(v) for v in channel_mean]
        self.channel_variance = [float(v) for v in channel_variance]
        self.filters, self.kernel_size, self.conv_layers = filters, kernel_size, conv_layers
        self.gru_units, self.dense_units, self.dropout = gru_units, dense_units, dropout

    def get_config(self):
        return {"channel_mean": self.channel_mean, "channel_variance": self.channel_variance,
                "filters": self.filters, "kernel_size": self.kernel_size, "conv_layers": self.conv_layers,
                "gru_units": self.gru_units, "dense_units": self.dense_units, "dropout": self.dropout,
                "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
