"""Intensity percentiles in TensorFlow ops, for normalisation inside the graph (training,
evaluation, prediction and the serving graph share it): cellular scales each channel
between its 1st and 99th percentiles, lch each crop."""


def percentiles(images, q):
    """[N, 1, 1, C]: the q-th percentile of each channel of each image [N, H, W, C],
    interpolated linearly between order statistics as numpy.percentile does."""
    import tensorflow as tf

    shape = tf.shape(images)
    values = tf.sort(tf.reshape(tf.transpose(images, [0, 3, 1, 2]), [shape[0], shape[3], -1]), axis=-1)
    count = tf.shape(values)[-1]
    position = q / 100.0 * tf.cast(count - 1, tf.float32)
    below = tf.cast(tf.floor(position), tf.int32)
    above = tf.minimum(below + 1, count - 1)
    fraction = position - tf.cast(below, tf.float32)
    result = values[..., below] * (1 - fraction) + values[..., above] * fraction
    return result[:, tf.newaxis, tf.newaxis, :]
