"""Tiling and segmentation metrics on hand-made inputs with known answers."""

import numpy as np
import pytest

from biomodels.ops.segmentation_metrics import class_scores, confusion_matrix
from biomodels.ops.tiling import blend_window, plan_tiles, predict_tiled, tile_starts


def test_tile_starts_cover_the_length_with_overlap():
    assert tile_starts(100, 40, 10) == [0, 30, 60]
    assert tile_starts(30, 40, 10) == [0]
    starts = tile_starts(1000, 512, 64)
    assert starts[0] == 0 and starts[-1] == 1000 - 512
    assert all(b - a <= 512 - 64 for a, b in zip(starts, starts[1:]))



def test_tile_plans_split_the_longest_axis_until_a_tile_fits():
    assert plan_tiles((128, 256, 256), 10_000_000, 32) == (128, 256, 256)  # fits: whole, one tile
    # too large: Y splits first (the longest axis, then the first of equal ones) into two
    # tiles of (256 + 32) / 2 = 144 that overlap by 32; then X; then Y again, into three
    assert plan_tiles((128, 256, 256), 6_000_000, 32) == (128, 144, 256)
    assert plan_tiles((128, 256, 256), 4_000_000, 32) == (128, 144, 144)
    assert plan_tiles((128, 256, 256), 2_000_000, 32) == (128, 107, 144)
    assert plan_tiles((4096, 4096), 4_000_000, (64, 64)) == (1408, 2080)
    for shape, budget in (((300, 1000, 1000), 5_000_000), ((37, 50), 400)):
        tile = plan_tiles(shape, budget, 8)
        assert np.prod(tile) <= budget and all(t <= n for t, n in zip(tile, shape))
    assert plan_tiles((20, 20), 10, 8) == (14, 14)  # a tile of 2·overlap + 1 or less is split no further


def test_one_tile_is_the_untiled_call_itself():
    image = np.random.default_rng(0).random((20, 30, 1)).astype(np.float32)
    calls = []

    def marked(tiles):
        calls.append(tiles.shape)
        return tiles * 3 + 1

    np.testing.assert_array_equal(predict_tiled(image, marked, tile=(20, 30), overlap=8), image * 3 + 1)
    assert calls == [(1, 20, 30, 1)]

def test_blend_window_is_positive_and_flat_in_the_middle():
    window = blend_window(16, 4)
    assert window.shape == (16, 16) and window.min() > 0
    assert window[8, 8] == 1.0 and window[0, 0] < window[2, 2]


@pytest.mark.parametrize("shape", [(50, 70), (20, 9), (64, 64)])
def test_predict_tiled_reassembles_a_pixelwise_function_exactly(shape):
    image = np.random.default_rng(0).random(shape + (1,)).astype(np.float32)
    calls = []

    def doubled(tiles):
        calls.append(tiles.shape)
        return np.concatenate([tiles * 2, tiles + 1], axis=-1)

    out = predict_tiled(image, doubled, tile=32, overlap=8, batch_size=3)
    assert out.shape == shape + (2,)
    np.testing.assert_allclose(out[..., 0], image[..., 0] * 2, atol=1e-5)
    np.testing.assert_allclose(out[..., 1], image[..., 0] + 1, atol=1e-5)
    assert all(c[1:3] == (32, 32) and c[0] <= 3 for c in calls)


def test_confusion_matrix_ignores_the_ignore_label():
    truth = np.array([0, 0, 1, 1, 255])
    pred = np.array([0, 1, 1, 1, 0])
    np.testing.assert_array_equal(confusion_matrix(truth, pred, 2), [[1, 1], [0, 2]])


def test_class_scores_known_answer():
    confusion = np.array([[1, 1], [0, 2]])
    scores = class_scores(confusion)
    np.testing.assert_allclose(scores["iou"], [1 / 2, 2 / 3])
    np.testing.assert_allclose(scores["f1"], [2 / 3, 4 / 5])
    np.testing.assert_allclose(scores["precision"], [1.0, 2 / 3])
    np.testing.assert_allclose(scores["recall"], [0.5, 1.0])


def test_class_scores_absent_class_is_nan_and_false_positives_count():
    scores = class_scores(np.array([[3, 1, 0], [0, 0, 0], [0, 0, 0]]))
    assert scores["iou"][1] == 0.0  # predicted but never true
    assert np.isnan(scores["iou"][2])  # neither true nor predicted


def test_percentiles_match_numpys_on_both_sides_of_the_median():
    """Each q from its top_k side (q < 50 from the smallest values, q ≥ 50 from the
    largest), or all from one sort when a q lies in the middle half, interpolated as
    numpy.percentile: on odd sizes, ties, one value, and several qs sharing one top_k."""
    from biomodels.ops.normalisation import percentiles

    rng = np.random.default_rng(0)
    ties = np.repeat(np.arange(6, dtype=np.float32), 4).reshape(1, 4, 6, 1)
    for images in (rng.random((2, 7, 5, 3)).astype(np.float32), ties, np.float32([[[[3.5]]]]),
                   rng.gamma(2.0, 100.0, (3, 64, 64, 1)).astype(np.float32)):
        # both top_k sides; the bottom side alone; the top side alone; the sort (a middle q)
        for qs in ((0.0, 1.0, 5.0, 95.0, 99.0, 100.0), (1.0, 24.0), (75.0, 99.0), (0.0, 1.0, 49.9, 50.0, 99.0)):
            for q, found in zip(qs, percentiles(images, *qs)):
                expected = np.percentile(images, q, axis=(1, 2), keepdims=True)
                np.testing.assert_allclose(np.asarray(found), expected, rtol=1e-6, atol=1e-5)
    with_one = percentiles(np.float32([[[[1.0], [2.0], [4.0]]]]), 75.0)
    assert len(with_one) == 1 and float(with_one[0][0, 0, 0, 0]) == 3.0  # halfway between 2 and 4
