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


def test_no_cells_and_bad_labels():
    np.testing.assert_array_equal(masks_to_flows(np.zeros((5, 6), np.uint16)), np.zeros((2, 5, 6), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        masks_to_flows(np.zeros((2, 5, 6), int))
    with pytest.raises(ValueError, match="negative"):
        masks_to_flows(-np.ones((5, 5), int))
