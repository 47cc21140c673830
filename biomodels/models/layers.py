"""Small layers shared by the architectures."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="biomodels")
class BilinearUpsample2D(keras.layers.Layer):
    """Bilinear ×2 upsampling (half-pixel centres, edges clamped) of [N, H, W, C] for
    any, even unknown, H and W. Keras's UpSampling2D(interpolation="bilinear") needs
    static sizes in graph mode; this layer gives the same values as
    tf.image.resize(x, [2H, 2W], "bilinear") using only shifts and weighted sums."""

    def call(self, inputs):
        x = self._double(inputs, axis=1)
        return self._double(x, axis=2)

    @staticmethod
    def _double(x, axis):
        length = ops.shape(x)[axis]
        first = ops.take(x, [0], axis=axis)
        last = ops.take(x, ops.convert_to_tensor([length - 1]), axis=axis)
        before = ops.concatenate([first, ops.take(x, ops.arange(0, length - 1), axis=axis)], axis=axis)
        after = ops.concatenate([ops.take(x, ops.arange(1, length), axis=axis), last], axis=axis)
        even = 0.75 * x + 0.25 * before
        odd = 0.75 * x + 0.25 * after
        interleaved = ops.stack([even, odd], axis=axis + 1)
        shape = ops.shape(x)
        new_shape = [shape[i] for i in range(4)]
        new_shape[axis] = length * 2
        return ops.reshape(interleaved, new_shape)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, None if height is None else 2 * height, None if width is None else 2 * width, channels)
