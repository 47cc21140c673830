"""Intensity percentiles in TensorFlow ops, for normalisation inside the graph (training,
evaluation, prediction and the serving graph share it): cellular scales each channel
between its 1st and 99th percentiles, lch each crop."""


def percentiles(images, *qs):
    """A list of [N, 1, 1, C], one for each q: the q-th percentile of each channel of each
    image [N, H, W, C], interpolated linearly between order statistics as
    numpy.percentile does.

    The two order statistics of a q come from `top_k` of the values (q ≥ 50) or of their
    negatives (q < 50), k reaching just past them, rather than from a sort: the 1st and
    99th percentiles then cost a fifth of a sort (measured from 4096 to 4 million values).
    The qs on one side share one top_k. With a q in the middle half, where top_k costs
    more than a sort, all of them come from one sort."""
    import tensorflow as tf

    shape = tf.shape(images)
    values = tf.reshape(tf.transpose(images, [0, 3, 1, 2]), [shape[0], shape[3], -1])
    count = tf.shape(values)[-1]
    ranks = {}
    for q in qs:
        position = q / 100.0 * tf.cast(count - 1, tf.float32)
        below = tf.cast(tf.floor(position), tf.int32)
        ranks[q] = (below, tf.minimum(below + 1, count - 1), position - tf.cast(below, tf.float32))
    if any(25.0 < q < 75.0 for q in qs):  # top_k of a quarter or more of the values costs more than a sort
        top, bottom = [], list(qs)
        smallest = tf.sort(values, axis=-1)
    else:
        top, bottom = [q for q in qs if q >= 50.0], [q for q in qs if q < 50.0]
        smallest = -tf.math.top_k(-values, 1 + tf.reduce_max([ranks[q][1] for q in bottom])).values if bottom else None
    largest = tf.math.top_k(values, count - tf.reduce_min([ranks[q][0] for q in top])).values if top else None
    results = []
    for q in qs:
        below, above, fraction = ranks[q]
        if q in top:  # ascending rank r is the (count - 1 - r)-th largest
            low, high = largest[..., count - 1 - below], largest[..., count - 1 - above]
        else:
            low, high = smallest[..., below], smallest[..., above]
        results.append((low * (1 - fraction) + high * fraction)[:, tf.newaxis, tf.newaxis, :])
    return results
