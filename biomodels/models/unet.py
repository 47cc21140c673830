"""The 2-D U-Net of the cryo-ET annotation study.

Encoder: at each level a double 3×3 convolution with batch normalisation and ReLU,
then 2×2 max-pooling; dropout of whole feature maps (0.5, PyTorch's Dropout2d as in the
study: Keras's SpatialDropout2D) on the outputs of the second and third levels,
which also feed their skips. Decoder: bilinear ×2 upsampling, a 3×3 convolution
without activation, concatenation with the skip, a double convolution. A 1×1
convolution gives per-class logits; the softmax runs in float32 so mixed precision
keeps exact probabilities. Height and width must be multiples of 2**(depth-1).
"""

import keras
from keras import layers

from biomodels.models import layers as model_layers
from biomodels.models.layers import BilinearUpsample2D


def _double_conv(x, filters, name):
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        # momentum 0.9 is PyTorch's BatchNorm2d default (0.1 there), the study's framework
        x = model_layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)  # TensorFlow's fused kernel
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


@keras.saving.register_keras_serializable(package="biomodels")
class CryoETUNet(keras.Model):
    """U-Net with `depth` levels of widths base_filters·2**level.

    The paper's network is base_filters=64, depth=5 (64…1024); `dropout_levels`
    counts levels from 0, so (1, 2) are the study's second and third levels.
    """

    def __init__(self, num_classes=6, base_filters=64, depth=5, dropout=0.5, dropout_levels=(1, 2),
                 input_channels=1, **kwargs):
        inputs = keras.Input(shape=(None, None, input_channels), name="images")
        x = inputs
        skips = []
        for level in range(depth):
            if level > 0:
                x = layers.MaxPooling2D(2, name=f"down{level}_pool")(x)
            x = _double_conv(x, base_filters * 2**level, name=f"down{level}")
            if level in dropout_levels and dropout > 0:
                # whole feature maps, as PyTorch's Dropout2d in the study's code
                x = layers.SpatialDropout2D(dropout, name=f"down{level}_dropout")(x)
            skips.append(x)
        for level in reversed(range(depth - 1)):
            filters = base_filters * 2**level
            x = BilinearUpsample2D(name=f"up{level}_resize")(x)
            x = layers.Conv2D(filters, 3, padding="same", name=f"up{level}_conv")(x)
            x = layers.Concatenate(name=f"up{level}_concat")([skips[level], x])
            x = _double_conv(x, filters, name=f"up{level}")
        logits = layers.Conv2D(num_classes, 1, name="logits")(x)
        probabilities = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
        super().__init__(inputs=inputs, outputs=probabilities, **kwargs)
        self.num_classes = num_classes
        self.base_filters = base_filters
        self.depth = depth
        self.dropout = dropout
        self.dropout_levels = tuple(dropout_levels)
        self.input_channels = input_channels

    @property
    def size_multiple(self):
        """Height and width of the input must be multiples of this."""
        return self.size_multiple_for(self.depth)

    @staticmethod
    def size_multiple_for(depth):
        """The size multiple of a U-Net of `depth` levels (depth - 1 poolings)."""
        return 2 ** (depth - 1)

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "base_filters": self.base_filters,
            "depth": self.depth,
            "dropout": self.dropout,
            "dropout_levels": list(self.dropout_levels),
            "input_channels": self.input_channels,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
