"""Instance masks from Cellpose flows in TensorFlow ops only, for exported graphs: a
SavedModel that answers with masks makes every TF Serving client a cell segmenter, and
runs the post-processing on the GPU where there is one.

The algorithm is biomodels.ops.flows.masks_from_flows (numba) step for step:
- pixels above the cell-probability threshold follow the flows for `niter` Euler steps
  (bilinear sampling, positions clamped to the image);
- the end points' histogram has seeds at its 5×5 local maxima above 10 points, joined into
  sinks by 8-connectivity and grown 5 times into bins holding more than 2 points; a pixel
  takes its end bin's sink, and sinks over 40 % of the image are dropped;
- each cell's flows are recomputed from its mask by heat diffusion (all cells at once:
  a pixel averages the 3×3 neighbours of its own cell, each cell for twice its height +
  width steps, heat added at the pixel nearest the median of its coordinates, first in
  raster order on ties), and cells whose mean squared flow error exceeds
  `flow_threshold` are dropped;
- holes are filled, cells under `min_size` pixels removed, the rest numbered 1..N in the
  raster order of their seeds (the numba path's order).

One documented difference: a hole here is a background region enclosed by a single cell.
The numba path fills each cell's holes within its bounding box, which also swallows
another cell lying wholly inside a ring-shaped one; here that inner cell is kept.
Ids are handled as float32 in the max-pooling steps, exact up to 2**24 pixels (4096 ×
4096); larger images are refused.
"""

import tensorflow as tf

MAX_PIXELS = 2**24
# The loops here are explicit tf.while_loop and tf.cond; AutoGraph would only spend
# seconds converting the code each time a signature is traced.
_plain = tf.autograph.experimental.do_not_convert
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


@_plain
def masks_from_flows(flows, cellprob, flow_threshold=0.4, cellprob_threshold=0.0, min_size=15, niter=200):
    """int32 instance labels [H, W] (0 background, 1..N) from unit flows [H, W, 2] (dY,
    dX) and cell-probability logits [H, W]; the arguments of the numba path, as tensors
    or numbers (`flow_threshold` <= 0 or None keeps every cell)."""
    flows = tf.convert_to_tensor(flows, tf.float32)
    cellprob = tf.convert_to_tensor(cellprob, tf.float32)
    shape = tf.shape(cellprob)
    tf.debugging.assert_less_equal(tf.cast(shape[0], tf.int64) * tf.cast(shape[1], tf.int64),
                                   tf.constant(MAX_PIXELS, tf.int64),
                                   message=f"images of more than {MAX_PIXELS} pixels: use the Python post-processing")
    foreground = cellprob > cellprob_threshold
    pixels = tf.where(foreground)  # [N, 2] int64, raster order
    ends = follow_flows(flows * tf.cast(foreground, tf.float32)[..., tf.newaxis], tf.cast(pixels, tf.float32), niter)
    sinks = cluster_positions(ends, shape)
    masks = tf.scatter_nd(tf.cast(pixels, tf.int32), sinks, shape)
    masks = _drop(masks, _sizes(masks) > 0.4 * tf.cast(tf.size(masks), tf.float32))
    masks = _dense(masks)
    if flow_threshold is not None:
        threshold = tf.convert_to_tensor(flow_threshold, tf.float32)
        masks = tf.cond(threshold > 0, lambda: _drop(masks, flow_errors(masks, flows) > threshold), lambda: masks)
    masks = fill_holes(masks)
    masks = _drop(masks, _sizes(masks) < tf.cast(min_size, tf.float32))
    return _dense(masks)


@_plain
def follow_flows(flows, positions, iterations=200):
    """[N, 2] positions (y, x) after `iterations` Euler steps along `flows` [H, W, 2],
    bilinearly interpolated, kept inside the image."""
    height, width = tf.shape(flows)[0], tf.shape(flows)[1]
    # per pixel and channel, the bilinear form a + b·fx + c·fy + d·fx·fy of the square
    # whose top-left corner it is (the edge repeated): eight 1-D gathers per step, and y
    # and x kept apart, ran twice as fast here as one gather of [N, 4, 2]
    right = tf.concat([flows[:, 1:], flows[:, -1:]], axis=1)
    down = tf.concat([flows[1:], flows[-1:]], axis=0)
    down_right = tf.concat([right[1:], right[-1:]], axis=0)
    forms = [flows, right - flows, down - flows, down_right - right - down + flows]
    (ay, ax), (by, bx), (cy, cx), (dy, dx) = [[tf.reshape(form[..., channel], [-1]) for channel in (0, 1)]
                                              for form in forms]
    last_y, last_x = tf.cast(height - 1, tf.float32), tf.cast(width - 1, tf.float32)
    corner_y, corner_x = tf.cast(tf.maximum(height - 2, 0), tf.float32), tf.cast(tf.maximum(width - 2, 0), tf.float32)
    row_length = tf.cast(width, tf.float32)

    def step(index, y, x):
        top, left = tf.minimum(tf.floor(y), corner_y), tf.minimum(tf.floor(x), corner_x)  # y, x >= 0: the floor
        fy, fx = y - top, x - left
        square = tf.cast(top * row_length + left, tf.int32)

        def at(table):
            return tf.gather(table, square)

        move_y = at(ay) + fx * at(by) + fy * (at(cy) + fx * at(dy))
        move_x = at(ax) + fx * at(bx) + fy * (at(cx) + fx * at(dx))
        return index + 1, tf.clip_by_value(y + move_y, 0.0, last_y), tf.clip_by_value(x + move_x, 0.0, last_x)

    _, y, x = tf.while_loop(lambda index, *_: index < iterations, step,
                            (tf.constant(0), positions[:, 0], positions[:, 1]))
    return tf.stack([y, x], axis=1)


@_plain
def cluster_positions(positions, shape, min_count=10, grow_count=2, grow_steps=5):
    """The sink id of each position's bin (0 if none); ids are 1 + the flat index of the
    sink's first pixel, so they rise in raster order as ndimage.label's do."""
    bins = tf.cast(tf.round(positions), tf.int32)  # half to even, as numpy rounds
    flat = bins[:, 0] * shape[1] + bins[:, 1]
    counts = tf.reshape(tf.math.unsorted_segment_sum(tf.ones_like(flat, tf.float32), flat, shape[0] * shape[1]), shape)
    seeds = (counts == _pool(counts, 5)) & (counts > min_count)
    sinks = _components(seeds)
    allowed = counts > grow_count
    for _ in range(grow_steps):
        sinks = tf.where((sinks == 0) & allowed, _pool(sinks, 3), sinks)
    return tf.gather(tf.reshape(tf.cast(sinks, tf.int32), [-1]), flat)


@_plain
def flow_errors(masks, flows):
    """Per id 0..max of `masks` (dense ids): the sum over dY and dX of the mean squared
    difference between the flows recomputed from the masks and `flows` [H, W, 2]."""
    count = tf.reduce_max(masks) + 1
    recomputed = masks_to_flows(masks)
    squared = tf.reduce_sum(tf.math.unsorted_segment_mean(tf.reshape((recomputed - flows) ** 2, [-1, 2]),
                                                          tf.reshape(masks, [-1]), count), axis=1)
    return squared


@_plain
def masks_to_flows(masks):
    """Unit flows [H, W, 2] of dense instance ids [H, W] by heat diffusion, every cell at
    once (see the module's docstring); zero outside cells."""
    height, width = tf.shape(masks)[0], tf.shape(masks)[1]
    count = tf.reduce_max(masks) + 1
    ids = tf.reshape(masks, [-1])
    flat_index = tf.range(tf.size(ids))
    ys, xs = flat_index // width, flat_index % width
    inside = ids > 0
    cell_ids, cell_ys, cell_xs, cell_flat = (tf.boolean_mask(t, inside) for t in (ids, ys, xs, flat_index))
    # the centre: the cell's pixel nearest to the median of its coordinates, first in raster order on ties
    twice_median_y = _twice_segment_median(cell_ys, cell_ids, count, height)
    twice_median_x = _twice_segment_median(cell_xs, cell_ids, count, width)
    distance = ((2 * cell_ys - tf.gather(twice_median_y, cell_ids)) ** 2
                + (2 * cell_xs - tf.gather(twice_median_x, cell_ids)) ** 2)
    key = tf.cast(distance, tf.int64) * tf.cast(tf.size(ids), tf.int64) + tf.cast(cell_flat, tf.int64)
    centres = tf.math.unsorted_segment_min(key, cell_ids, count)[1:] % tf.cast(tf.size(ids), tf.int64)
    centre_map = tf.scatter_nd(centres[:, tf.newaxis], tf.ones_like(centres, tf.float32), tf.shape(ids, tf.int64))
    # steps: twice the box's height + width, as in the numba path
    def span(values):  # per id, max - min of the cell's coordinates
        return tf.math.unsorted_segment_max(values, cell_ids, count) - tf.math.unsorted_segment_min(values, cell_ids, count)

    steps = tf.concat([[0], 2 * (span(cell_ys)[1:] + span(cell_xs)[1:] + 2)], axis=0)
    pixel_steps = tf.reshape(tf.gather(steps, ids), [height, width])
    centre_map = tf.reshape(centre_map, [height, width])
    cell = tf.cast(masks > 0, tf.float32)
    # The mean over a pixel's 3×3 neighbours of its own cell is the plain 3×3 box sum
    # (a convolution; there is no heat outside cells) less what the neighbours of other
    # cells hold: pairs (pixel, neighbour of another cell), few, where cells touch.
    pixel_index, other_index = _pairs_across_cells(masks)
    box = tf.ones([3, 3, 1, 1], tf.float32)

    def step(index, heat):
        active = index < pixel_steps
        warmed = heat + tf.where(active, centre_map, 0.0)
        summed = tf.nn.conv2d(warmed[tf.newaxis, ..., tf.newaxis], box, 1, "SAME")[0, ..., 0]
        foreign = tf.math.unsorted_segment_sum(tf.gather(tf.reshape(warmed, [-1]), other_index), pixel_index,
                                               tf.size(warmed))
        mean = (summed - tf.reshape(foreign, [height, width])) * cell / 9.0
        return index + 1, tf.where(active, mean, heat)

    _, heat = tf.while_loop(lambda index, _: index < tf.reduce_max(steps), step,
                            (tf.constant(0), tf.zeros([height, width], tf.float32)))
    logs = tf.math.log1p(heat)  # zero outside cells

    def own(dy, dx):  # the neighbour's log-heat where it lies in the same cell, else 0
        return _shift(logs, dy, dx, 0.0) * tf.cast(_shift(masks, dy, dx, 0) == masks, tf.float32)

    dy, dx = own(1, 0) - own(-1, 0), own(0, 1) - own(0, -1)
    norm = tf.sqrt(dy * dy + dx * dx) + 1e-20
    return tf.stack([dy / norm * cell, dx / norm * cell], axis=-1)


def _pairs_across_cells(masks):
    """(flat index of a cell pixel, flat index of its 8-neighbour in another cell), every
    such pair."""
    width = tf.shape(masks)[1]
    pixels, others = [], []
    for dy, dx in _NEIGHBOURS:
        if dy == dx == 0:
            continue
        other = _shift(masks, dy, dx, 0)
        where = tf.cast(tf.where((masks > 0) & (other > 0) & (other != masks)), tf.int32)
        flat = where[:, 0] * width + where[:, 1]
        pixels.append(flat)
        others.append(flat + dy * width + dx)
    return tf.concat(pixels, axis=0), tf.concat(others, axis=0)


@_plain
def fill_holes(masks):
    """`masks` with every background region enclosed by a single cell given to that cell.
    A background pixel is a candidate of cell m when the first cell pixel in each of the
    four directions is m; candidates 4-connected to a background pixel that is no
    candidate (or to the image's edge) are removed until none is: what is left are the
    regions whose whole border is m."""
    first = [_first_cell(masks, axis, reverse) for axis in (0, 1) for reverse in (False, True)]
    enclosing = first[0]
    candidate = (masks == 0) & (enclosing > 0)
    for other in first[1:]:
        candidate &= other == enclosing
    background = masks == 0

    def shrink(_, current):
        kept = current
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            neighbour_candidate = _shift(current, dy, dx, False)
            neighbour_cell = _shift(~background, dy, dx, False)
            kept &= neighbour_candidate | neighbour_cell
        return tf.reduce_any(kept != current), kept

    _, holes = tf.while_loop(lambda changed, _: changed, shrink, (tf.constant(True), candidate))
    return tf.where(holes, enclosing, masks)


def _first_cell(masks, axis, reverse):
    """For each pixel, the id of the nearest cell pixel before it along `axis` (after it
    when `reverse`), itself included; 0 when there is none (the image's edge)."""
    if axis == 0:
        return tf.transpose(_first_cell(tf.transpose(masks), 1, reverse))
    if reverse:
        return tf.reverse(_first_cell(tf.reverse(masks, [1]), 1, False), [1])
    rows, width = tf.shape(masks)[0], tf.shape(masks)[1]
    is_cell = tf.cast(masks > 0, tf.int32)
    rank = tf.cumsum(is_cell, axis=1)  # how many cell pixels up to here in the row
    # table[row, k] = the id of the row's k-th cell pixel; column 0: none yet
    row_index = tf.broadcast_to(tf.range(rows)[:, tf.newaxis], tf.shape(masks))
    where = tf.where(masks > 0)
    coordinates = tf.stack([tf.gather_nd(row_index, where), tf.gather_nd(rank, where)], axis=1)
    table = tf.scatter_nd(coordinates, tf.gather_nd(masks, where), [rows, width + 1])
    return tf.gather(table, rank, batch_dims=1)


def _twice_segment_median(values, ids, count, span):
    """Twice the median of `values` (ints in [0, span)) per id 0..count-1 (the mean of
    the two middle values for even counts, as ndimage.median), as ints."""
    order = tf.argsort(tf.cast(ids, tf.int64) * tf.cast(span, tf.int64) + tf.cast(values, tf.int64), stable=True)
    ordered = tf.gather(values, order)
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(ids), ids, count)
    starts = tf.cumsum(sizes, exclusive=True)
    low = tf.clip_by_value(starts + (sizes - 1) // 2, 0, tf.maximum(tf.size(values) - 1, 0))
    high = tf.clip_by_value(starts + sizes // 2, 0, tf.maximum(tf.size(values) - 1, 0))
    pad = tf.zeros([1], values.dtype)  # an empty image: gather from a one-element array
    padded = tf.concat([ordered, pad], axis=0)
    return tf.gather(padded, low) + tf.gather(padded, high)


def _components(seeds):
    """8-connected components of a boolean [H, W]: float32 ids, 1 + the flat index of each
    component's first pixel, 0 elsewhere."""
    size = tf.cast(tf.size(seeds), tf.float32)
    index = tf.reshape(tf.range(1.0, size + 1.0), tf.shape(seeds))
    none = size + 1.0

    def spread(_, labels):
        lowest = tf.where(seeds, -_pool(-labels, 3), none)
        return tf.reduce_any(lowest != labels), lowest

    _, labels = tf.while_loop(lambda changed, _: changed, spread, (tf.constant(True), tf.where(seeds, index, none)))
    return tf.where(seeds, labels, 0.0)


def _pool(values, size):
    """The maximum over each pixel's size × size neighbourhood inside the image."""
    return tf.nn.max_pool2d(values[tf.newaxis, ..., tf.newaxis], size, 1, "SAME")[0, ..., 0]


def _shift(values, dy, dx, fill):
    """result[y, x] = values[y + dy, x + dx], `fill` beyond the edge (|dy|, |dx| <= 1)."""
    height, width = tf.shape(values)[0], tf.shape(values)[1]
    padded = tf.pad(values, [[1, 1], [1, 1]], constant_values=fill)
    return padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]


def _sizes(masks):
    """Pixels per id 0..max."""
    return tf.math.unsorted_segment_sum(tf.ones_like(masks, tf.float32), masks, tf.reduce_max(masks) + 1)


def _drop(masks, unwanted):
    """`masks` with the ids where `unwanted` (per id 0..max) is true set to 0."""
    return tf.where(tf.gather(unwanted, masks), 0, masks)


def _dense(masks):
    """Ids renumbered 1..N in the order of their old ids, 0 kept."""
    old = tf.sort(tf.unique(tf.reshape(masks, [-1]))[0])
    old = tf.concat([[0], tf.boolean_mask(old, old > 0)], axis=0)
    return tf.reshape(tf.cast(tf.searchsorted(old, tf.reshape(masks, [-1])), tf.int32), tf.shape(masks))
