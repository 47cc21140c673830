"""Random 3-D transforms of a volume with its signed distance target, in TensorFlow ops
with stateless seeds (DeepIS): the 8 flips, an in-plane rotation, a zoom with crop in
all three axes (so the distance, in voxels, scales exactly by the zoom; an in-plane zoom
alone would stretch distances along Y and X but not along Z) and an in-plane elastic
deformation. The in-plane transforms are one resampling of every Z slice at the same
source coordinates, bilinear, with edges clamped; the zoom along Z a linear resampling
of the slices."""

import math


def augment_volume_and_distance(example, seed, config):
    """{"volume", "distance"} (Z, Y, X) transformed at random; `seed` is a [2] seed."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, num=7)
    volume, distance = example["volume"], example["distance"]
    both = tf.stack([volume, distance], axis=-1)
    if config.flips:
        for axis in range(3):
            flip = tf.random.stateless_uniform([], seeds[axis]) < 0.5
            both = tf.cond(flip, lambda b=both, a=axis: tf.reverse(b, [a]), lambda b=both: b)
    height, width = tf.shape(both)[1], tf.shape(both)[2]
    angle = tf.random.stateless_uniform([], seeds[3], 0.0, 2 * math.pi) if config.rotation else tf.constant(0.0)
    low, high = config.zoom if len(config.zoom) == 2 else (1.0, 1.0)
    zoom = tf.random.stateless_uniform([], seeds[4], low, high)
    zoom = tf.where(tf.random.stateless_uniform([], seeds[5]) < config.zoom_probability, zoom, 1.0)
    ys, xs = _source_coordinates(height, width, angle, zoom)
    if config.elastic_voxels > 0:
        dy, dx = _smooth_displacement(height, width, config.elastic_voxels, seeds[6])
        ys, xs = ys + dy, xs + dx
    both = sample_in_plane(both, ys, xs)
    both = zoom_along_z(both, zoom)
    return {"volume": both[..., 0], "distance": both[..., 1] * zoom}


def zoom_along_z(volume, zoom):
    """`volume` (Z, Y, X, C) magnified by `zoom` along Z about its centre (linear
    between slices, edges clamped), keeping its depth."""
    import tensorflow as tf

    depth = tf.shape(volume)[0]
    d = tf.cast(depth, tf.float32)
    zs = (tf.range(d) - (d - 1) / 2) / zoom + (d - 1) / 2
    z0 = tf.floor(zs)
    weight = (zs - z0)[:, None, None, None]
    below = tf.gather(volume, tf.clip_by_value(tf.cast(z0, tf.int32), 0, depth - 1))
    above = tf.gather(volume, tf.clip_by_value(tf.cast(z0, tf.int32) + 1, 0, depth - 1))
    return below * (1 - weight) + above * weight


def _source_coordinates(height, width, angle, zoom):
    """Where each output pixel samples the input: rotation by `angle` and magnification
    by `zoom` about the centre."""
    import tensorflow as tf

    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    y, x = tf.meshgrid(tf.range(h) - (h - 1) / 2, tf.range(w) - (w - 1) / 2, indexing="ij")
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    return cos * y - sin * x + (h - 1) / 2, sin * y + cos * x + (w - 1) / 2


def _smooth_displacement(height, width, magnitude, seed):
    """A smooth random in-plane displacement field (pixels), from a 4×4 grid of normal
    offsets with standard deviation `magnitude`, resized bicubically."""
    import tensorflow as tf

    coarse = tf.random.stateless_normal([1, 4, 4, 2], seed) * magnitude
    field = tf.image.resize(coarse, tf.stack([height, width]), method="bicubic")[0]
    return field[..., 0], field[..., 1]


def sample_in_plane(volume, ys, xs):
    """Bilinear samples of `volume` (Z, Y, X, C) at in-plane coordinates (Y, X) shared by
    every slice; coordinates outside are clamped to the edge."""
    import tensorflow as tf

    height, width = tf.shape(volume)[1], tf.shape(volume)[2]
    y0, x0 = tf.floor(ys), tf.floor(xs)
    wy, wx = (ys - y0)[..., None, None], (xs - x0)[..., None, None]
    by_plane = tf.transpose(volume, [1, 2, 0, 3])  # (Y, X, Z, C)

    def at(yy, xx):
        yy = tf.clip_by_value(tf.cast(yy, tf.int32), 0, height - 1)
        xx = tf.clip_by_value(tf.cast(xx, tf.int32), 0, width - 1)
        return tf.gather_nd(by_plane, tf.stack([yy, xx], axis=-1))

    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    return tf.transpose(top * (1 - wy) + bottom * wy, [2, 0, 1, 3])
