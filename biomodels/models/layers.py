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


@keras.saving.register_keras_serializable(package="biomodels")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras's BatchNormalization, with the same weights, settings and moving averages,
    computed by TensorFlow's fused kernel (FusedBatchNormV3) for inputs normalised over
    their last axis: [N, H, W, C], [N, D, H, W, C], and [N, C] (as [N, 1, 1, C]). Keras 3
    normalises with separate moments and arithmetic ops; the fused kernel made a CPnet
    training step (widths 32-256, batch 8 of 224²) take 3.51 s instead of 4.02 s on this
    project's 2-core CPU (the other tasks: benchmarks/train_step.py). Other ranks or axes,
    and other backends, fall back to Keras's own computation, as does `fused = False`.

    The class keeps Keras's name on purpose: Keras files key a layer's weights by its
    class name, so .keras files and epoch checkpoints written with Keras's layer load
    into this one, and the other way round."""

    #: False: Keras's own computation (what benchmarks/train_step.py compares against)
    fused = True

    def call(self, inputs, training=None, mask=None):
        rank = len(inputs.shape)
        if (not self.fused or keras.backend.backend() != "tensorflow" or rank not in (2, 4, 5)
                or self.axis not in (-1, rank - 1) or mask is not None or self.renorm or self.synchronized):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, tf.float32)
        x = x[:, tf.newaxis, tf.newaxis, :] if rank == 2 else x
        data_format = "NDHWC" if rank == 5 else "NHWC"
        scale = self.gamma if self.scale else tf.ones_like(self.moving_mean)
        offset = self.beta if self.center else tf.zeros_like(self.moving_mean)
        if training and self.trainable:
            y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=scale, offset=offset, mean=tf.zeros([0]), variance=tf.zeros([0]), epsilon=self.epsilon,
                data_format=data_format, is_training=True)
            count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)  # the kernel answers the unbiased variance
            self.moving_mean.assign(self.moving_mean * self.momentum + tf.cast(mean, self.moving_mean.dtype) * (1 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum
                                        + tf.cast(variance, self.moving_variance.dtype) * (1 - self.momentum))
        else:
            y, *_ = tf.raw_ops.FusedBatchNormV3(x=x, scale=scale, offset=offset, mean=self.moving_mean,
                                                variance=self.moving_variance, epsilon=self.epsilon,
                                                data_format=data_format, is_training=False)
        y = y[:, 0, 0, :] if rank == 2 else y
        return tf.cast(y, inputs.dtype)
