"""biomodels.ops.graph_masks, Cellpose's dynamics in TensorFlow ops, against the numba
path (biomodels.ops.flows) on hand-made label images whose answer is known."""

import functools

import numpy as np
import pytest

from biomodels.ops import flows as numba_flows
from biomodels.ops import graph_masks
from biomodels.ops.matching import average_precision


def discs(shape, count, seed, radii=(5, 12)):
    """Instance labels of `count` discs that may touch (each keeps at least 70 % of itself)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for _ in range(count):
        cy, cx, radius = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(*radii)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        if (labels[disc] > 0).mean() < 0.3:
            labels[disc & (labels == 0)] = labels.max() + 1
    return labels


@functools.lru_cache(maxsize=None)
def graph_function():
    """masks_from_flows as one tf.function for every size and threshold (traced once)."""
    import tensorflow as tf

    scalar = tf.TensorSpec([], tf.float32)
    return tf.function(graph_masks.masks_from_flows, input_signature=[
        tf.TensorSpec([None, None, 2], tf.float32), tf.TensorSpec([None, None], tf.float32), scalar, scalar, scalar])


def both_paths(flows, cellprob, flow_threshold=0.4, cellprob_threshold=0.0, min_size=15):
    """(numba masks, graph masks) from flows (2, H, W) and logits (H, W)."""
    expected = numba_flows.masks_from_flows(flows, cellprob, flow_threshold, cellprob_threshold, min_size)
    found = graph_function()(np.ascontiguousarray(flows.transpose(1, 2, 0)), cellprob, flow_threshold,
                             cellprob_threshold, min_size).numpy()
    return expected, found


@pytest.mark.parametrize("seed", [0, 1])
def test_masks_equal_the_numba_paths_on_true_and_noisy_flows(seed):
    labels = discs((96, 128), 40, seed)
    flows = numba_flows.masks_to_flows(labels)
    cellprob = np.where(labels > 0, 4.0, -4.0).astype(np.float32)
    noisy = flows + np.random.default_rng(seed).normal(0, 0.3, flows.shape).astype(np.float32)
    for given in (flows, noisy):
        expected, found = both_paths(given, cellprob)
        assert found.dtype == np.int32 and found.shape == labels.shape
        assert expected.max() >= 0.9 * labels.max()
        np.testing.assert_array_equal(found, expected)  # the same cells, numbered alike
    ap, *_ = average_precision(labels, found, [0.5])
    assert ap[0] > 0.9


def test_flows_recomputed_in_the_graph_equal_the_numba_flows():
    labels = discs((64, 80), 14, 3)
    labels[50:60, 5:7] = labels.max() + 1  # a thin, even-sized cell: the median falls between pixels
    crescent = np.zeros_like(labels, bool)
    yy, xx = np.mgrid[:64, :80]
    crescent[((yy - 20) ** 2 + (xx - 60) ** 2 <= 100) & ((yy - 20) ** 2 + (xx - 65) ** 2 > 49)] = True
    labels[crescent] = labels.max() + 1
    dense = np.searchsorted(np.unique(labels), labels).astype(np.int32)
    expected = numba_flows.masks_to_flows(dense)
    found = graph_masks.masks_to_flows(dense).numpy().transpose(2, 0, 1)
    differ = (np.abs(found - expected) > 1e-4).any(axis=0)
    # only where the heat is symmetric about a pixel: the direction of a zero gradient is
    # then set by rounding, which differs in float32 and in another order of summing
    assert differ.sum() <= 0.005 * (dense > 0).sum(), np.argwhere(differ)
    # what the flow check compares: each cell's mean squared difference, far below 0.4
    squared = ((found - expected) ** 2).sum(axis=0)
    per_cell = np.bincount(dense.ravel(), squared.ravel())[1:] / np.bincount(dense.ravel())[1:]
    assert per_cell.max() < 0.05


def test_thresholds_and_small_cells():
    labels = discs((64, 64), 10, 5)
    labels[:9, :9] = 0
    labels[1:6, 1:6] = labels.max() + 1  # 25 pixels
    flows = numba_flows.masks_to_flows(labels)
    cellprob = np.where(labels > 0, 3.0, -3.0).astype(np.float32)
    for thresholds in ({"min_size": 20}, {"min_size": 30}, {"cellprob_threshold": 3.5}, {"flow_threshold": 0.0}):
        expected, found = both_paths(flows, cellprob, **thresholds)
        np.testing.assert_array_equal(found, expected)
    _, small_kept = both_paths(flows, cellprob, min_size=20)
    _, small_removed = both_paths(flows, cellprob, min_size=30)
    assert small_kept.max() == small_removed.max() + 1
    _, nothing = both_paths(flows, cellprob, cellprob_threshold=3.5)
    assert nothing.max() == 0
    # flows pointing away from the centres: every cell fails the flow check
    _, rejected = both_paths(-flows, cellprob, flow_threshold=0.4)
    _, unchecked = both_paths(-flows, cellprob, flow_threshold=0.0)
    assert rejected.max() < unchecked.max()


def test_holes_enclosed_by_one_cell_are_filled():
    masks = np.zeros((20, 24), np.int32)
    masks[2:12, 2:12] = 1
    masks[5:8, 5:8] = 0  # a hole inside cell 1
    masks[2:12, 14:22] = 2
    masks[5:8, 17:22] = 0  # a bay open to the right edge of cell 2: not a hole
    masks[14:19, 3:9] = 3
    masks[16, 5] = 0  # a one-pixel hole
    filled = graph_masks.fill_holes(masks).numpy()
    assert (filled[5:8, 5:8] == 1).all() and filled[16, 5] == 3
    assert (filled[5:8, 17:22] == 0).all()
    np.testing.assert_array_equal(filled[masks > 0], masks[masks > 0])
    # a background region whose border touches two cells stays background
    two = np.zeros((9, 9), np.int32)
    two[1:8, 1:8] = 1
    two[1:8, 4:8] = 2
    two[3:6, 3:6] = 0
    assert (graph_masks.fill_holes(two).numpy()[3:6, 3:6] == 0).all()


def test_an_empty_image_gives_no_cells():
    expected, found = both_paths(np.zeros((2, 16, 16), np.float32), np.full((16, 16), -5.0, np.float32))
    assert expected.max() == 0 and found.max() == 0 and found.shape == (16, 16)


def test_the_flow_steps_may_be_a_tensor():
    """Cellpose follows 200 / scale steps (the cells' size over the network's), which the
    `masks` signature computes in the graph: a tensor `niter` gives the numba path's masks
    at that many steps (one step leaves the pixels too spread to make any cell)."""
    import tensorflow as tf

    labels = discs((96, 128), 12, 3, radii=(14, 20))
    flows = numba_flows.masks_to_flows(labels)
    cellprob = np.where(labels > 0, 4.0, -4.0).astype(np.float32)
    for steps in (1, 4):
        expected = numba_flows.masks_from_flows(flows, cellprob, 0.0, 0.0, 15, niter=steps)
        found = graph_masks.masks_from_flows(flows.transpose(1, 2, 0), cellprob, 0.0, 0.0, 15, niter=tf.constant(steps))
        np.testing.assert_array_equal(found.numpy(), expected)
        assert expected.max() == (0 if steps == 1 else labels.max())
