"""Random rotation, scaling, flipping and cropping of 2-D examples that carry flow
fields, in one resampling each (TensorFlow, stateless seeds).

The transform maps every output pixel p to the input point M (p - c_out) + c_in, with
M = R(θ) F / s; images and flows are sampled bilinearly, labels by nearest neighbour.
A flow vector is a displacement, so it is carried over by M⁻¹ with the scale divided
out: the flows stay unit vectors pointing to the same cell centre.
"""

import math


def affine_crop(seed, input_shape, crop_size, scale):
    """(transform [8] for ImageProjectiveTransformV3, 2×2 map of (x, y) flow vectors)
    of a random rotation, horizontal flip and crop of `crop_size` at `scale`."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, num=4)
    angle = tf.random.stateless_uniform([], seeds[0], 0.0, 2 * math.pi)
    flip = tf.where(tf.random.stateless_uniform([], seeds[1]) < 0.5, -1.0, 1.0)
    height, width = tf.cast(input_shape[0], tf.float32), tf.cast(input_shape[1], tf.float32)
    half = crop_size / 2 / scale  # half the crop, in input pixels

    def centre(length, seed):
        low, high = tf.minimum(half, length / 2), tf.maximum(length - half, length / 2)
        return tf.random.stateless_uniform([], seed, low, high + 1e-3)

    centre_y, centre_x = centre(height, seeds[2]), centre(width, seeds[3])
    cos, sin = tf.cos(angle), tf.sin(angle)
    # M acts on (x, y): R(θ) · diag(flip, 1) / scale
    m00, m01, m10, m11 = cos * flip / scale, -sin / scale, sin * flip / scale, cos / scale
    out_centre = (crop_size - 1) / 2
    transform = tf.stack([m00, m01, centre_x - (m00 + m01) * out_centre,
                          m10, m11, centre_y - (m10 + m11) * out_centre, 0.0, 0.0])
    # M⁻¹ · scale = diag(flip, 1) · R(-θ), acting on (x, y) vectors
    vector_map = tf.stack([tf.stack([flip * cos, flip * sin]), tf.stack([-sin, cos])])
    return transform, vector_map


def resample(image, transform, crop_size, interpolation):
    """image [H, W, C] float32 -> [crop, crop, C], zero outside the input."""
    import tensorflow as tf

    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis], transforms=transform[tf.newaxis], output_shape=[crop_size, crop_size],
        fill_value=0.0, interpolation=interpolation, fill_mode="CONSTANT",
    )[0]


def transform_flow_example(image, labels, flows, seed, crop_size, scale):
    """Randomly rotated, flipped, scaled and cropped (image, labels, flows).

    image [H, W, C] float32, labels [H, W] int32, flows [H, W, 2] unit (dY, dX); the
    output is crop_size × crop_size; `scale` > 1 enlarges."""
    import tensorflow as tf

    transform, vector_map = affine_crop(seed, tf.shape(labels), crop_size, scale)
    image = resample(image, transform, crop_size, "BILINEAR")
    labels = tf.cast(tf.round(resample(tf.cast(labels, tf.float32)[..., tf.newaxis], transform, crop_size,
                                       "NEAREST")[..., 0]), tf.int32)
    sampled = resample(flows, transform, crop_size, "BILINEAR")
    # (dX', dY') = vector_map · (dX, dY)
    dx = vector_map[0, 0] * sampled[..., 1] + vector_map[0, 1] * sampled[..., 0]
    dy = vector_map[1, 0] * sampled[..., 1] + vector_map[1, 1] * sampled[..., 0]
    flows = tf.stack([dy, dx], axis=-1) * tf.cast(labels > 0, tf.float32)[..., tf.newaxis]
    return image, labels, flows
