"""The cryo-ET task: raw layouts, augmentation, serving graph and evaluation."""

import numpy as np
import pytest
import tensorflow as tf

from biomodels.errors import InputError
from biomodels.pipelines import readers
from biomodels.pipelines.manifest import Manifest
from biomodels.tasks import cryoet


def test_find_sources_pairs_tomograms_with_labels(cryoet_task, tiny_cryoet_config, tomogram_dir):
    sources = cryoet_task.bind(tiny_cryoet_config).find_sources(str(tomogram_dir))
    assert [s.name for s in sources] == [f"synthetic_tomogram_{i:03d}" for i in range(3)]
    assert all(s.paths[1].endswith("_labels.mrc") for s in sources)


def test_read_source_tiles_and_pads_with_ignored_labels(cryoet_task, tiny_cryoet_config, tmp_path):
    density = np.random.default_rng(0).normal(size=(2, 40, 50)).astype(np.float32)
    labels = np.ones((2, 40, 50), np.uint8)
    readers.write_mrc(str(tmp_path / "t.mrc"), density)
    readers.write_mrc(str(tmp_path / "t_labels.mrc"), labels)
    [source] = cryoet_task.bind(tiny_cryoet_config).find_sources(str(tmp_path))
    info, examples = cryoet_task.bind(tiny_cryoet_config).read_source(source)
    examples = list(examples)
    assert len(examples) == 2 * 2 * 2  # 2 slices, 40x50 padded to 64x64, tiles of 32
    assert all(e["image"].shape == (32, 32) for e in examples)
    merged = np.block([[examples[0]["labels"], examples[1]["labels"]], [examples[2]["labels"], examples[3]["labels"]]])
    assert (merged[:40, :50] == 1).all() and (merged[40:] == cryoet.IGNORE_LABEL).all() and (merged[:, 50:] == 255).all()
    assert info["mean"] == pytest.approx(float(density.mean()), abs=1e-5)


def test_two_dimensional_study_layout(cryoet_task, tiny_cryoet_config, tmp_path):
    for name in ("a", "b"):
        readers.write_tiff(str(tmp_path / "Image" / f"{name}.tif"), np.random.rand(32, 32).astype(np.float32))
        readers.write_png(str(tmp_path / "label" / f"{name}.png"), np.full((32, 32), 2, np.uint8))
    sources = cryoet_task.bind(tiny_cryoet_config).find_sources(str(tmp_path))
    assert [s.name for s in sources] == ["a", "b"]
    _, examples = cryoet_task.bind(tiny_cryoet_config).read_source(sources[0])
    [example] = list(examples)
    assert (example["labels"] == 2).all()


@pytest.mark.parametrize("make_bad, message", [
    (lambda d, l: (d, l[:, :10]), "differs from the tomogram"),
    (lambda d, l: (d, l + 6), r"labels must lie in 0\.\.5"),
    (lambda d, l: (np.where(d > 2, np.inf, d), l), "NaN or Inf"),
])
def test_bad_tomograms_are_named(cryoet_task, tiny_cryoet_config, tmp_path, make_bad, message):
    density = np.random.default_rng(0).normal(size=(2, 16, 16)).astype(np.float32) * 3
    labels = np.zeros((2, 16, 16), np.uint8)
    density, labels = make_bad(density, labels)
    readers.write_mrc(str(tmp_path / "bad.mrc"), density)
    readers.write_mrc(str(tmp_path / "bad_labels.mrc"), labels)
    [source] = cryoet_task.bind(tiny_cryoet_config).find_sources(str(tmp_path))
    with pytest.raises(InputError, match=message) as error:
        cryoet_task.bind(tiny_cryoet_config).read_source(source)
    assert "bad" in str(error.value)


def test_missing_labels_and_empty_directory(cryoet_task, tiny_cryoet_config, tmp_path):
    with pytest.raises(InputError, match="no tomograms"):
        cryoet_task.bind(tiny_cryoet_config).find_sources(str(tmp_path))
    readers.write_mrc(str(tmp_path / "lonely.mrc"), np.zeros((1, 8, 8), np.float32))
    with pytest.raises(InputError, match="no label volume lonely_labels.mrc"):
        cryoet_task.bind(tiny_cryoet_config).find_sources(str(tmp_path))


def test_augment_moves_image_and_labels_together(cryoet_task, tiny_cryoet_config):
    image = np.zeros((8, 8), np.float32)
    image[1, 5] = 1.0
    labels = (image * 3).astype(np.uint8)
    config = tiny_cryoet_config.__class__(**{**tiny_cryoet_config.__dict__, "noise_augmentation": 0.0})
    for seed in range(8):
        out = cryoet_task.bind(config).augment({"image": tf.constant(image), "labels": tf.constant(labels)}, tf.constant([seed, 0], tf.int64))
        bright = np.argwhere(out["image"].numpy() > 0.5)
        marked = np.argwhere(out["labels"].numpy() == 3)
        np.testing.assert_array_equal(bright, marked)
        assert out["labels"].dtype == tf.uint8


def test_class_weights_from_frequencies_average_to_one(cryoet_task, tiny_cryoet_config):
    frequencies = [0.7, 0.1, 0.05, 0.05, 0.05, 0.05]
    weights = np.array(cryoet_task.bind(tiny_cryoet_config, manifest=Manifest("cryoet", statistics={"class_frequencies": frequencies})).class_weights())
    assert np.dot(weights, frequencies) == pytest.approx(1.0)
    assert weights[0] < weights[1]


def test_serving_function_handles_sizes_that_are_not_multiples(cryoet_task, tiny_cryoet_config):
    from biomodels.models import CryoETUNet

    model = CryoETUNet(base_filters=4, depth=3)
    serve = cryoet_task.bind(tiny_cryoet_config).serving_functions(model)["serving_default"]
    images = np.random.default_rng(0).normal(size=(2, 30, 21, 1)).astype(np.float32)
    out = serve(images=tf.constant(images))
    assert out["probabilities"].shape == (2, 30, 21, 6) and out["labels"].dtype == tf.int32
    np.testing.assert_array_equal(out["labels"].numpy(), np.argmax(out["probabilities"].numpy(), -1))
    assert serve(images=tf.zeros([1, 3, 2, 1]) + 1.0)["labels"].shape == (1, 3, 2)
    # the graph normalises: scaling and shifting the input changes nothing
    shifted = serve(images=tf.constant(images * 5.0 + 3.0))
    np.testing.assert_allclose(shifted["probabilities"], out["probabilities"], atol=1e-4)

    # `standardised` takes images as they are: the same as serving_default on an image
    # already standardised, and different on one that is not
    standardised = cryoet_task.bind(tiny_cryoet_config).serving_functions(model)["standardised"]
    z = (images - images.mean(axis=(1, 2, 3), keepdims=True)) / images.std(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(standardised(images=tf.constant(z))["probabilities"], out["probabilities"], atol=1e-4)
    assert np.abs(standardised(images=tf.constant(images * 5.0 + 3.0))["probabilities"] - out["probabilities"]).max() > 0.01


def test_a_tile_means_the_same_at_any_tile_size(cryoet_task, tiny_cryoet_config):
    """Training examples are standardised with their tomogram's statistics, not their
    own; prediction standardises a slice with its tomogram's and sends tiles as they
    are. With a network that looks at each pixel alone, any tiling gives the untiled
    answer exactly (per-tile standardisation gave each tile its own offset)."""
    from biomodels.tasks.base import option_values
    from biomodels.tasks.cryoet.inference import slice_probabilities

    image, _ = cryoet_task.bind(tiny_cryoet_config).model_io({"image": tf.fill([8, 8], 2.5), "labels": tf.zeros([8, 8], tf.uint8)})
    np.testing.assert_array_equal(image.numpy(), np.full((8, 8, 1), 2.5, np.float32))

    class PixelwisePredictor:
        signatures = ("serving_default", "standardised")
        calls = []

        def __call__(self, signature, images):
            self.calls.append((signature, images.shape))
            logits = np.concatenate([images * k for k in range(6)], axis=-1)
            return {"probabilities": np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)}

    predictor = PixelwisePredictor()
    ramp = np.linspace(-2, 3, 96 * 80, dtype=np.float32).reshape(96, 80)  # tiles differ in mean
    whole = slice_probabilities(predictor, ramp, option_values(cryoet_task.predict_options, {}))
    assert predictor.calls == [("standardised", (1, 96, 80, 1))]  # a small slice goes whole
    for tile, overlap in ((32, 8), (48, 16)):
        tiled = slice_probabilities(predictor, ramp,
                                    option_values(cryoet_task.predict_options, {"tile": tile, "overlap": overlap}))
        np.testing.assert_allclose(tiled, whole, atol=1e-6)
    assert [shape for _, shape in predictor.calls[-2:]] == [(4, 48, 48, 1), (2, 48, 48, 1)]  # 3 × 2 tiles


def test_evaluate_perfect_prediction_scores_one(cryoet_task, tiny_cryoet_config):
    labels = np.random.default_rng(0).integers(0, 6, (2, 8, 8))

    class Oracle:
        def __call__(self, inputs, training=False):
            return tf.one_hot(tf.cast(inputs[..., 0], tf.int32), 6)

    data = tf.data.Dataset.from_tensor_slices((labels[..., None].astype(np.float32), labels)).batch(2)
    metrics = cryoet_task.bind(tiny_cryoet_config).evaluate(Oracle(), data)
    assert metrics["mean_iou_features"] == pytest.approx(1.0)
    assert metrics["f1/ribosome"] == pytest.approx(1.0) and metrics["pixels"] == 128


def test_synthetic_tomogram_has_every_feature_class():
    from biomodels.pipelines.synthetic import cryoet as synthetic

    rng = np.random.default_rng(5)
    present = set()
    for _ in range(4):
        density, labels = synthetic.tomogram(rng, (12, 128, 128))
        assert density.dtype == np.float32 and labels.dtype == np.uint8 and density.shape == labels.shape
        present |= set(np.unique(labels).tolist())
    assert present == set(range(6))


def test_extreme_voxels_do_not_overflow_the_statistics():
    from biomodels.tasks.cryoet.data import normalise_tomogram

    volume = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    volume[0, 0, :2] = -3e38  # two damaged voxels near float32's limit
    normalised, mean, std = normalise_tomogram(volume)
    assert np.isfinite([mean, std]).all() and np.isfinite(normalised).all()
    assert normalised.dtype == np.float32 and abs(float(normalised.astype(np.float64).mean())) < 1e-3



def test_the_paper_preset_trains_without_augmentation(cryoet_task):
    from biomodels import config as config_lib

    example = {"image": tf.random.normal((16, 16)), "labels": tf.zeros((16, 16), tf.uint8)}
    paper = config_lib.resolve(cryoet_task, "paper")
    assert paper.augment is False
    same = cryoet_task.bind(paper).augment(example, tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(same["image"], example["image"])
    quick = cryoet_task.bind(config_lib.resolve(cryoet_task, "quick")).augment(example, tf.constant([1, 2], tf.int64))
    assert not np.array_equal(quick["image"], example["image"])
