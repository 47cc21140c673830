"""Architectures and layers: shapes, known values, and .keras / config round trips."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from biomodels.models import CryoETUNet, WeightedSparseCategoricalCrossentropy
from biomodels.models import layers as model_layers
from biomodels.models.layers import BilinearUpsample2D


def test_bilinear_upsample_matches_tensorflow_resize():
    x = np.random.default_rng(0).random((2, 5, 7, 3)).astype("float32")
    ours = np.asarray(BilinearUpsample2D()(x))
    reference = tf.image.resize(x, [10, 14], "bilinear").numpy()
    assert ours.shape == (2, 10, 14, 3)
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_bilinear_upsample_accepts_unknown_sizes_in_a_graph():
    upsample = tf.function(BilinearUpsample2D(), input_signature=[tf.TensorSpec([None, None, None, 2])])
    assert upsample(tf.zeros([1, 3, 9, 2])).shape == (1, 6, 18, 2)


def test_unet_outputs_probabilities_of_six_classes():
    model = CryoETUNet(base_filters=4, depth=3)
    out = np.asarray(model(np.random.rand(2, 32, 48, 1).astype("float32")))
    assert out.shape == (2, 32, 48, 6)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    assert model.size_multiple == 4


def test_unet_paper_widths():
    model = CryoETUNet()
    widths = [layer.filters for layer in model.layers if layer.name.endswith("_conv1") and layer.name.startswith("down")]
    assert widths == [64, 128, 256, 512, 1024]
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.SpatialDropout2D)]
    assert [layer.name for layer in dropouts] == ["down1_dropout", "down2_dropout"]
    # the study's Dropout2d: whole feature maps are dropped, each kept one scaled by 2
    dropped = np.asarray(dropouts[0](np.ones((4, 8, 8, 16), np.float32), training=True))
    per_map = dropped.reshape(4, 64, 16)
    assert np.all(per_map.min(axis=1) == per_map.max(axis=1))
    assert set(np.unique(per_map).tolist()) == {0.0, 2.0}


def test_unet_keras_file_round_trip(tmp_path):
    model = CryoETUNet(base_filters=4, depth=3, dropout=0.25)
    x = np.random.rand(1, 16, 16, 1).astype("float32")
    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, CryoETUNet)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_unet_config_round_trip():
    model = CryoETUNet(base_filters=4, depth=2, dropout_levels=(1,))
    clone = CryoETUNet.from_config(model.get_config())
    assert clone.count_params() == model.count_params()


def test_bilinear_layer_in_keras_file(tmp_path):
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, BilinearUpsample2D()(inputs))
    model.save(tmp_path / "up.keras")
    loaded = keras.saving.load_model(tmp_path / "up.keras", safe_mode=True)
    x = np.random.rand(1, 4, 4, 1).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x))


def test_weighted_crossentropy_known_answer_and_ignored_pixels():
    loss = WeightedSparseCategoricalCrossentropy([1.0, 3.0], ignore_label=255)
    y_pred = np.array([[[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]], np.float32)  # 1 x 3 pixels x 2 classes
    y_true = np.array([[0, 1, 255]])
    expected = (1.0 * -np.log(0.5) + 3.0 * -np.log(0.8)) / (1.0 + 3.0)
    np.testing.assert_allclose(float(loss(y_true, y_pred)), expected, rtol=1e-6)


def test_weighted_crossentropy_round_trip():
    loss = WeightedSparseCategoricalCrossentropy([0.5, 2.0], ignore_label=7)
    clone = WeightedSparseCategoricalCrossentropy.from_config(loss.get_config())
    assert clone.class_weights == [0.5, 2.0] and clone.ignore_label == 7


def test_unet_trains_one_step():
    model = CryoETUNet(base_filters=4, depth=3)
    model.compile("adam", WeightedSparseCategoricalCrossentropy([1.0] * 6))
    x = np.random.rand(2, 16, 16, 1).astype("float32")
    y = np.random.randint(0, 6, (2, 16, 16))
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))


def test_unet_under_mixed_precision_keeps_float32_probabilities():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = CryoETUNet(base_filters=4, depth=3)
        model.compile(keras.optimizers.Adam(1e-3), WeightedSparseCategoricalCrossentropy([1.0] * 6))
        x = np.random.rand(2, 16, 16, 1).astype("float32")
        loss = model.train_on_batch(x, np.random.randint(0, 6, (2, 16, 16)))
        assert np.isfinite(loss)
        assert model(x).dtype == "float32"
        assert model.get_layer("down0_conv1").compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("shape", [(4, 6, 5, 3), (3, 4, 5, 2, 3), (16, 3)])
def test_fused_batch_norm_is_keras_batch_norm(shape):
    """Same outputs, gradients and moving statistics as Keras's BatchNormalization, in
    training and inference, from the same weights: images, volumes and vectors."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, shape).astype(np.float32))
    settings = {"momentum": 0.9, "epsilon": 1e-5}
    keras_bn, fused = keras.layers.BatchNormalization(**settings), model_layers.BatchNormalization(**settings)
    keras_bn.build(x.shape)
    fused.build(x.shape)
    weights = [rng.uniform(0.5, 1.5, 3), rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), rng.uniform(0.5, 2, 3)]
    for layer in (keras_bn, fused):
        layer.set_weights([w.astype(np.float32) for w in weights])
    for training in (True, False):
        answers = []
        for layer in (keras_bn, fused):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=training)
                loss = tf.reduce_sum(y * tf.range(1.0, 4.0))
            answers.append((y.numpy(), *[g.numpy() for g in tape.gradient(loss, [x, *layer.trainable_weights])]))
        for ours, theirs in zip(answers[1], answers[0]):
            np.testing.assert_allclose(ours, theirs, atol=1e-4)
    for ours, theirs in zip(fused.get_weights(), keras_bn.get_weights()):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert not np.allclose(fused.get_weights()[2], weights[2])  # the moving mean moved
    # another rank or axis: Keras's own computation
    np.testing.assert_allclose(model_layers.BatchNormalization(axis=1)(x, training=True),
                               keras.layers.BatchNormalization(axis=1)(x, training=True), atol=1e-5)


def test_cellpose_files_written_with_keras_batch_norm_still_load(tmp_path, monkeypatch):
    """Runs trained before CellposeNet's batch norm went through the fused kernel saved
    Keras's own layer; their .keras files and epoch weights load into today's model."""
    import biomodels.models.cellpose as cellpose

    images = np.random.default_rng(0).normal(size=(1, 32, 32, 2)).astype(np.float32)
    keras.utils.set_random_seed(0)
    with monkeypatch.context() as patch:
        patch.setattr(cellpose.model_layers, "BatchNormalization", keras.layers.BatchNormalization)
        old = cellpose.CellposeNet(nchan=2, nbase=(4, 8, 16, 32))
        assert not any(type(layer).__module__.startswith("biomodels") for layer in old.layers
                       if isinstance(layer, keras.layers.BatchNormalization))
        for layer in old.layers:  # batch norm statistics that are not the initial ones
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_mean.assign(np.linspace(-0.2, 0.2, layer.moving_mean.shape[0]).astype(np.float32))
        old.save(tmp_path / "old.keras")
        old.save_weights(tmp_path / "old.weights.h5")
        expected = old(images, training=False).numpy()
    loaded = keras.models.load_model(tmp_path / "old.keras")
    assert isinstance(loaded.get_layer("output.0"), model_layers.BatchNormalization)
    # the two kernels round differently; 1e-4 as for the PyTorch checkpoints' outputs
    np.testing.assert_allclose(loaded(images, training=False), expected, atol=1e-4)
    fresh = cellpose.CellposeNet(nchan=2, nbase=(4, 8, 16, 32))
    fresh.load_weights(tmp_path / "old.weights.h5")
    np.testing.assert_allclose(fresh(images, training=False), expected, atol=1e-4)
