"""Instance matching: IoU between label images and Cellpose's average precision."""

import numpy as np
import pytest

from biomodels.ops.matching import average_precision, intersection_over_union, matched_pairs


def squares(shape, boxes):
    """A label image with object i + 1 filling boxes[i] = (top, left, bottom, right)."""
    labels = np.zeros(shape, np.int32)
    for index, (top, left, bottom, right) in enumerate(boxes, start=1):
        labels[top:bottom, left:right] = index
    return labels


def test_identical_and_relabelled_images_match_fully():
    truth = squares((20, 20), [(0, 0, 5, 5), (10, 10, 20, 20)])
    relabelled = np.where(truth == 1, 7, np.where(truth == 2, 3, 0))  # other, non-consecutive ids
    ap, tp, fp, fn = average_precision(truth, relabelled)
    np.testing.assert_array_equal(ap, [1, 1, 1])
    np.testing.assert_array_equal(tp, [2, 2, 2])
    np.testing.assert_array_equal(fp + fn, [0, 0, 0])


def test_a_shifted_object_counts_by_its_iou():
    truth = squares((10, 20), [(0, 0, 10, 10)])
    shifted = squares((10, 20), [(0, 2, 10, 12)])  # overlap 80 of union 120: IoU 2/3
    np.testing.assert_allclose(intersection_over_union(truth, shifted), [[2 / 3]])
    ap, tp, fp, fn = average_precision(truth, shifted, thresholds=(0.5, 0.75))
    np.testing.assert_array_equal(tp, [1, 0])
    np.testing.assert_array_equal(fp, [0, 1])
    np.testing.assert_array_equal(fn, [0, 1])
    np.testing.assert_allclose(ap, [1.0, 0.0])


def test_missed_and_extra_objects():
    truth = squares((20, 20), [(0, 0, 5, 5), (10, 10, 15, 15)])
    found = squares((20, 20), [(0, 0, 5, 5), (15, 0, 20, 5), (5, 15, 10, 20)])
    ap, tp, fp, fn = average_precision(truth, found, thresholds=0.5)
    assert (tp[0], fp[0], fn[0]) == (1, 2, 1) and ap[0] == pytest.approx(1 / 4)
    ap, tp, fp, fn = average_precision(truth, np.zeros_like(truth))
    np.testing.assert_array_equal(ap, [0, 0, 0])
    np.testing.assert_array_equal(fn, [2, 2, 2])
    ap, *_ = average_precision(np.zeros((4, 4), int), np.zeros((4, 4), int))
    np.testing.assert_array_equal(ap, [1, 1, 1])
    # an image with no background at all: its one object covers everything
    ap, tp, *_ = average_precision(np.ones((4, 4), int), np.full((4, 4), 5))
    np.testing.assert_array_equal(tp, [1, 1, 1])


def test_one_to_one_matching_is_optimal_not_greedy():
    # greedy matching takes the best pair (0.8) and leaves true object 2 without a partner
    iou = np.array([[0.8, 0.6], [0.55, 0.0]])
    assert matched_pairs(iou, 0.5) == 2
    assert matched_pairs(iou, 0.7) == 1
    assert matched_pairs(np.zeros((0, 3)), 0.5) == 0


def test_lists_of_images_and_bad_inputs():
    truth = squares((10, 10), [(0, 0, 5, 5)])
    ap, tp, fp, fn = average_precision([truth, truth], [truth, np.zeros_like(truth)])
    assert ap.shape == (2, 3) and tp.shape == (2, 3)
    np.testing.assert_array_equal(ap[:, 0], [1, 0])
    with pytest.raises(ValueError, match="differ in shape"):
        average_precision(truth, truth[:5])
    with pytest.raises(ValueError, match="negative"):
        average_precision(truth, -truth)
    with pytest.raises(ValueError, match="2 true label images but 1"):
        average_precision([truth, truth], [truth])
