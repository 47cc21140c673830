"""The 3-D ResNet-GCN U-Net of DeepIS, which maps a refractive-index tomogram to a signed
distance: positive inside the CAR-T cell, negative inside the target cell, 0 outside.

Encoder: a stem of two 3×3×3 conv + BN + ReLU at full resolution, then four residual
stages of two bottleneck blocks (1×1×1 to half width, 3×3×3 with stride 2 in a stage's
first block, 1×1×1; BN after each, ReLU after the first two; projection shortcut with
BN; ReLU after the sum). Every level feeds a Global Convolutional Network skip of 24
channels: two branches of separable large kernels, (k,1,1)->(1,1,k)->(1,k,1) and
(1,k,1)->(1,1,k)->(k,1,1), summed, without BN or activation. Decoder: upsample
trilinearly, add the level's GCN skip, 1×1×1 conv, a residual pair of 3×3×3 convs; a
final 1×1×1 conv gives one linear channel (float32), the same size as the input (the
study's code made it 2 voxels larger through a padding bug). Input sizes must be
multiples of 16.
"""

import keras
from keras import layers, ops

from biomodels.models import layers as model_layers

GCN_CHANNELS = 24


@keras.saving.register_keras_serializable(package="biomodels")
class TrilinearUpsample3D(layers.Layer):
    """×2 linear interpolation along depth, height and width (half-pixel centres, edges
    clamped: what tf.image.resize's bilinear does in 2-D), for any input size."""

    def call(self, inputs):
        x = inputs
        for axis in (1, 2, 3):
            x = _double_along(x, axis)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *[None if n is None else 2 * n for n in input_shape[1:4]], input_shape[4])


def _double_along(x, axis):
    """Values at the half-pixel positions 2i and 2i+1 from neighbours i-1, i, i+1."""
    length = ops.shape(x)[axis]
    first = ops.take(x, [0], axis=axis)
    last = ops.take(x, ops.convert_to_tensor([length - 1]), axis=axis)
    before = ops.concatenate([first, ops.take(x, ops.arange(0, length - 1), axis=axis)], axis=axis)
    after = ops.concatenate([ops.take(x, ops.arange(1, length), axis=axis), last], axis=axis)
    even, odd = 0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after
    stacked = ops.stack([even, odd], axis=axis + 1)
    shape = ops.shape(x)
    new_shape = [shape[i] for i in range(axis)] + [2 * length] + [shape[i] for i in range(axis + 1, 5)]
    return ops.reshape(stacked, new_shape)


def _conv_bn(x, filters, kernel, name, strides=1, relu=True):
    x = layers.Conv3D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = model_layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)  # TensorFlow's fused kernel
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _bottleneck(x, filters, strides, name):
    shortcut = x
    y = _conv_bn(x, filters // 2, 1, f"{name}_reduce")
    y = _conv_bn(y, filters // 2, 3, f"{name}_spatial", strides=strides)
    y = _conv_bn(y, filters, 1, f"{name}_expand", relu=False)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, f"{name}_projection", strides=strides, relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _gcn(x, k, name):
    """Global Convolutional Network block: two separable large-kernel branches, summed."""
    a = layers.Conv3D(GCN_CHANNELS, (k, 1, 1), padding="same", name=f"{name}_a1")(x)
    a = layers.Conv3D(GCN_CHANNELS, (1, 1, k), padding="same", name=f"{name}_a2")(a)
    a = layers.Conv3D(GCN_CHANNELS, (1, k, 1), padding="same", name=f"{name}_a3")(a)
    b = layers.Conv3D(GCN_CHANNELS, (1, k, 1), padding="same", name=f"{name}_b1")(x)
    b = layers.Conv3D(GCN_CHANNELS, (1, 1, k), padding="same", name=f"{name}_b2")(b)
    b = layers.Conv3D(GCN_CHANNELS, (k, 1, 1), padding="same", name=f"{name}_b3")(b)
    return layers.Add(name=f"{name}_sum")([a, b])


@keras.saving.register_keras_serializable(package="biomodels")
class DeepISNet(keras.Model):
    """`widths` per level (stem, then four stages); `gcn_kernels` per level (the
    paper's 13, 13, 9, 7, 5; the study's code used 1, 9, 7, 5, 3)."""

    def __init__(self, widths=(32, 64, 128, 256, 512), gcn_kernels=(13, 13, 9, 7, 5), input_channels=1, **kwargs):
        if len(widths) != 5 or len(gcn_kernels) != 5:
            raise ValueError("DeepISNet needs 5 widths and 5 GCN kernel sizes (stem and four stages)")
        inputs = keras.Input(shape=(None, None, None, input_channels), name="volumes")
        x = _conv_bn(inputs, widths[0], 3, "stem1")
        x = _conv_bn(x, widths[0], 3, "stem2")
        skips = [_gcn(x, gcn_kernels[0], "gcn0")]
        for stage in range(1, 5):
            x = _bottleneck(x, widths[stage], 2, f"stage{stage}_block1")
            x = _bottleneck(x, widths[stage], 1, f"stage{stage}_block2")
            skips.append(_gcn(x, gcn_kernels[stage], f"gcn{stage}"))
        x = skips[4]
        for level in (3, 2, 1, 0):
            x = TrilinearUpsample3D(name=f"up{level}_resize")(x)
            x = layers.Add(name=f"up{level}_skip")([x, skips[level]])
            x = layers.Conv3D(GCN_CHANNELS, 1, name=f"up{level}_mix")(x)
            y = layers.Conv3D(GCN_CHANNELS, 3, padding="same", activation="relu", name=f"up{level}_res1")(x)
            y = layers.Conv3D(GCN_CHANNELS, 3, padding="same", name=f"up{level}_res2")(y)
            x = layers.Add(name=f"up{level}_residual")([x, y])
        distance = layers.Conv3D(1, 1, dtype="float32", name="distance")(x)
        super().__init__(inputs=inputs, outputs=distance, **kwargs)
        self.widths = tuple(widths)
        self.gcn_kernels = tuple(gcn_kernels)
        self.input_channels = input_channels

    size_multiple = 16

    def get_config(self):
        return {"widths": list(self.widths), "gcn_kernels": list(self.gcn_kernels),
                "input_channels": self.input_channels, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
