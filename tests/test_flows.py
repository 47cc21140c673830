"""Flows from masks: unit vectors inside cells that point towards each cell's centre."""

import numpy as np
import pytest

from biomodels.ops.flows import masks_to_flows


def disc(shape, centre, radius, label=1, labels=None):
    labels = np.zeros(shape, np.int32) if labels is None else labels
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    labels[(y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius ** 2] = label
    return labels


def test_flows_of_a_disc_are_unit_and_point_to_its_centre():
    labels = disc((41, 41), (20, 20), 12)
    flows = masks_to_flows(labels)
    assert flows.shape == (2, 41, 41) and flows.dtype == np.float32
    inside = labels > 0
    assert np.all(flows[:, ~inside] == 0)
    norms = np.hypot(flows[0], flows[1])[inside]
    np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-5)
    y, x = np.nonzero(inside)
    towards = np.stack([20 - y, 20 - x]).astype(float)
    far = np.hypot(*towards) >= 3
    cosine = (flows[:, y, x] * towards).sum(axis=0)[far] / np.hypot(*towards)[far]
    assert cosine.min() > 0.9


def test_all_cells_at_once_equal_one_cell_at_a_time():
    labels = disc((48, 64), (20, 18), 10)
    labels = disc((48, 64), (22, 38), 11, label=5, labels=labels)  # touches the first cell
    labels[40:46, 50:62] = 2  # a small rectangle
    together = masks_to_flows(labels, iterations=60)
    for cell in (1, 5, 2):
        apart = masks_to_flows(np.where(labels == cell, cell, 0), iterations=60)
        np.testing.assert_allclose(together[:, labels == cell], apart[:, labels == cell], atol=1e-5)
    assert np.abs(together[:, labels > 0]).max() > 0.5



def test_ids_need_not_be_dense_nor_the_background_present():
    """Flows depend on the cells, not on how they are numbered: ids in the billions (as
    from a tracker) or an image that cells cover entirely give the flows of 1..N."""
    labels = disc((48, 64), (20, 18), 10)
    labels = disc((48, 64), (22, 38), 11, label=2, labels=labels)
    dense = masks_to_flows(labels)
    sparse = np.where(labels > 0, labels.astype(np.int64) * 1_000_000_007, 0)
    np.testing.assert_array_equal(masks_to_flows(sparse), dense)
    halves = np.full((20, 30), 7_000_000_000, np.int64)
    halves[:, 15:] = 9_000_000_000
    flows = masks_to_flows(halves)
    np.testing.assert_array_equal(flows, masks_to_flows(np.where(halves == halves[0, 0], 1, 2)))
    assert np.all(np.hypot(flows[0], flows[1]) > 0.99)  # every pixel is in a cell

def test_no_cells_and_bad_labels():
    np.testing.assert_array_equal(masks_to_flows(np.zeros((5, 6), np.uint16)), np.zeros((2, 5, 6), np.float32))
    with pytest.raises(ValueError, match="2-D label image or a 3-D label volume"):
        masks_to_flows(np.zeros((2, 2, 5, 6), int))
    with pytest.raises(ValueError, match="negative"):
        masks_to_flows(-np.ones((5, 5), int))


def cells_image():
    labels = disc((64, 80), (20, 20), 10)
    labels = disc((64, 80), (22, 40), 11, label=2, labels=labels)  # touches cell 1
    labels = disc((64, 80), (45, 60), 9, label=3, labels=labels)
    labels[50:58, 8:20] = 4
    return labels


def test_masks_round_trip_through_their_flows():
    from biomodels.ops.flows import masks_from_flows
    from biomodels.ops.matching import average_precision

    labels = cells_image()
    logits = np.where(labels > 0, 5.0, -5.0)
    masks = masks_from_flows(masks_to_flows(labels), logits)
    assert masks.dtype == np.uint16 and masks.max() == 4
    ap, tp, fp, fn = average_precision(labels, masks)
    assert ap[0] == 1.0 and ap[1] == 1.0  # every cell found, IoU at least 0.75
    assert np.all(masks[labels == 0] == 0)
    assert masks_from_flows(masks_to_flows(labels), logits, cellprob_threshold=6.0).max() == 0


def test_bad_flows_and_small_cells_are_removed():
    from biomodels.ops.flows import fill_holes_and_remove_small, masks_from_flows

    labels = cells_image()
    flows = masks_to_flows(labels)
    flows[0, labels == 3], flows[1, labels == 3] = 0.0, 1.0  # cell 3 all flows to its right edge
    logits = np.where(labels > 0, 5.0, -5.0)
    kept = masks_from_flows(flows, logits)
    assert len(np.unique(kept[labels == 3])) == 1 and kept[45, 60] == 0
    assert all(kept[labels == cell].min() > 0 for cell in (1, 2, 4))
    assert masks_from_flows(flows, logits, flow_threshold=None)[labels == 3].max() > 0
    # cell 4 (8×12 = 96 pixels) goes below min_size=100
    assert masks_from_flows(masks_to_flows(labels), logits, min_size=100)[labels == 4].max() == 0
    ring = disc((20, 20), (10, 10), 7) - disc((20, 20), (10, 10), 3)
    ring[0:2, 0:2] = 2
    filled = fill_holes_and_remove_small(ring, min_size=5)
    np.testing.assert_array_equal(filled, disc((20, 20), (10, 10), 7))
    with pytest.raises(ValueError, match="expected flows"):
        masks_from_flows(flows[:1], logits)
