"""CellposeNet: the architecture, its Keras round trip, and the conversion of a Cellpose
3.1.1.2 CPnet checkpoint checked against PyTorch in the reference environment."""

import numpy as np
import pytest

from conftest import run_reference_script


@pytest.fixture(scope="module")
def reference_cpnet(tmp_path_factory):
    """Files written by Cellpose's own CPnet (random weights) in the reference environment."""
    directory = tmp_path_factory.mktemp("cpnet")
    run_reference_script("cpnet_outputs.py", directory, "2,32,64,128,256", 64, 3)
    return directory


def test_converted_cellpose_checkpoint_gives_pytorchs_outputs(reference_cpnet):
    from biomodels.pipelines.torch_checkpoint import read_cellpose_net

    model = read_cellpose_net(str(reference_cpnet / "cpnet.pth"))
    assert model.nbase == (32, 64, 128, 256) and model.diam_mean == 30.0
    images = np.load(reference_cpnet / "images.npy").transpose(0, 2, 3, 1)
    maps, style = model.with_style()(images, training=False)
    expected = np.load(reference_cpnet / "maps.npy").transpose(0, 2, 3, 1)
    assert maps.shape == (2, 64, 64, 3) and style.shape == (2, 256)
    assert np.abs(np.asarray(maps) - expected).max() < 1e-4
    assert np.abs(np.asarray(style) - np.load(reference_cpnet / "style.npy")).max() < 1e-5
    # the flows are not trivially small, so the comparison means something
    assert np.abs(expected).max() > 0.1



def test_a_model_written_back_as_a_cellpose_state_dict_is_cellposes_own(reference_cpnet):
    """cellpose_state() is the inverse of the conversion: from the Cellpose checkpoint
    and back gives Cellpose's arrays, key for key and value for value."""
    from biomodels.pipelines.torch_checkpoint import read_cellpose_net, read_state_dict

    original = read_state_dict(str(reference_cpnet / "cpnet.pth"))
    written = read_cellpose_net(str(reference_cpnet / "cpnet.pth")).cellpose_state()
    kept = {key for key in original if not key.endswith("num_batches_tracked")}
    assert set(written) == kept
    for key in kept:
        assert written[key].shape == tuple(original[key].shape), key
        np.testing.assert_allclose(written[key], np.asarray(original[key], np.float32), atol=1e-7, err_msg=key)

def test_checkpoint_of_another_architecture_is_refused(reference_cpnet, tmp_path):
    from biomodels.errors import CheckpointError
    from biomodels.pipelines.torch_checkpoint import read_cellpose_net

    with pytest.raises(CheckpointError, match="not a Cellpose CPnet"):
        read_cellpose_net(str(reference_cpnet / "other.pth"))
    with pytest.raises(CheckpointError, match="takes 2 channels, not 1"):
        read_cellpose_net(str(reference_cpnet / "cpnet.pth"), nchan=1)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        read_cellpose_net(str(garbage))


def test_architecture_and_keras_round_trip(tmp_path):
    import keras

    from biomodels.models import CellposeNet

    keras.utils.set_random_seed(0)
    model = CellposeNet(nchan=2, nbase=(8, 16, 32, 64))
    assert model.size_multiple == 8
    images = np.random.default_rng(0).normal(size=(1, 32, 48, 2)).astype(np.float32)
    maps, style = model.with_style()(images)
    assert maps.shape == (1, 32, 48, 3) and style.shape == (1, 64)
    np.testing.assert_allclose(np.linalg.norm(style, axis=-1), 1.0, rtol=1e-5)
    # additive skips: the up path's widths equal the down path's, nothing is concatenated
    assert model.get_layer("upsample.up.res_up_0.proj.1").kernel.shape == (1, 1, 16, 8)
    assert model.get_layer("upsample.up.res_up_3.conv.conv_1.full").kernel.shape == (64, 64)
    path = str(tmp_path / "cellpose.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(restored(images), model(images), atol=1e-6)
    assert restored.nbase == (8, 16, 32, 64)


def _crafted_checkpoint(path, monkeypatch, values, offset, size, stride):
    """A PyTorch zip checkpoint written without PyTorch: one float tensor `w` viewing a
    storage of `values` with the given offset, size and stride, as torch.save lays it out."""
    import collections
    import pickle
    import sys
    import types
    import zipfile

    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    FloatStorage = type("FloatStorage", (), {"__module__": "torch"})

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called here")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    storage = object()

    class Tensor:
        def __reduce__(self):
            return _rebuild_tensor_v2, (storage, offset, size, stride, False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", len(values)) if obj is storage else None

    import io

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(collections.OrderedDict(w=Tensor()))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", np.asarray(values, "<f4").tobytes())


@pytest.mark.parametrize("offset, size, stride, problem", [
    (0, (2, 3), (3, 1), None),                       # a whole 2×3 tensor
    (2, (2, 2), (1, 2), None),                       # a strided view inside the storage
    (0, (4, 3), (3, 1), "reaching element 11 of a storage of 6"),
    (5, (2,), (1,), "reaching element 6 of a storage of 6"),
    (0, (10**12,), (10**6,), "of a storage of 6"),
    (-1, (2,), (1,), "do not describe a tensor"),
    (0, (2, 2), (1,), "do not describe a tensor"),
    (0, (2,), (-1,), "do not describe a tensor"),
])
def test_tensor_extents_are_checked_against_their_storage(tmp_path, monkeypatch, offset, size, stride, problem):
    from biomodels.errors import CheckpointError
    from biomodels.pipelines.torch_checkpoint import read_state_dict

    values = np.arange(6, dtype=np.float32)
    path = tmp_path / "crafted.pth"
    _crafted_checkpoint(path, monkeypatch, values, offset, size, stride)
    monkeypatch.undo()
    if problem is None:
        expected = np.lib.stride_tricks.as_strided(values[offset:], size, tuple(4 * s for s in stride))
        np.testing.assert_array_equal(read_state_dict(str(path))["w"], expected)
    else:
        with pytest.raises(CheckpointError, match=f"crafted.pth: holds a tensor .*{problem}"):
            read_state_dict(str(path))


def test_coupled_sgd_follows_pytorchs_weight_decay():
    """Two steps on w = 1 with a constant gradient 0.5, lr 0.1, momentum 0.9, decay 0.01:
    PyTorch's SGD adds 0.01·w to the gradient before the momentum (w 0.949, then 0.852151);
    Keras's own weight_decay shrinks w apart from it and ends elsewhere."""
    import keras

    from biomodels.models.cellpose import CoupledSGD

    def two_steps(optimizer):
        weight = keras.Variable([1.0])
        values = []
        for _ in range(2):
            optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5]), weight)])
            values.append(float(weight.numpy()[0]))
        return values

    assert two_steps(CoupledSGD(0.1, momentum=0.9, l2=0.01)) == pytest.approx([0.949, 0.852151], abs=1e-6)
    assert two_steps(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01))[1] != pytest.approx(0.852151, abs=1e-5)
    restored = CoupledSGD.from_config(CoupledSGD(0.1, momentum=0.9, l2=0.01).get_config())
    assert restored.l2 == 0.01


def test_learning_rate_halves_as_cellposes_train_seg_for_any_number_of_epochs():
    """train_seg halves the rate ten times over the last 100 epochs of more than 300, the
    last 50 (every 5) of more than 100, never at 100 or fewer: the schedule in the middle
    of each epoch (4 steps an epoch), peak 0.2, warm-up 10 epochs."""
    from biomodels.models.cellpose import CellposeLearningRate

    def rates(epochs, halving_epochs=None, at=()):
        schedule = CellposeLearningRate(0.2, 4, epochs, 10, halving_epochs)
        return [float(schedule(4 * epoch + 1)) for epoch in at]  # step 4k + 1: epoch k + 0.5

    assert rates(100, at=(4, 50, 99)) == pytest.approx([0.09, 0.2, 0.2])  # 100 epochs: warm-up, then no halving
    assert rates(200, at=(149, 150, 154, 155, 199)) == pytest.approx([0.2, 0.1, 0.1, 0.05, 0.2 / 1024])
    assert rates(500, at=(399, 400, 409, 410, 499)) == pytest.approx([0.2, 0.1, 0.1, 0.05, 0.2 / 1024])
    assert rates(100, 20, at=(79, 80, 82, 99)) == pytest.approx([0.2, 0.1, 0.05, 0.2 / 1024])  # explicit: every 2
    assert rates(500, 0, at=(499,)) == pytest.approx([0.2])
    restored = CellposeLearningRate.from_config(CellposeLearningRate(0.2, 4, 200).get_config())
    assert restored.halving_epochs == 50


def test_gray_reading_is_cellposes_channels_0_0(tmp_path):
    from biomodels.pipelines import readers
    from biomodels.tasks.cellular.data import read_cell_image

    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    readers.write_png(str(tmp_path / "cells.png"), rgb)
    image = read_cell_image(str(tmp_path / "cells.png"), (0, 1), gray=True)
    assert image.shape == (16, 16, 2)
    np.testing.assert_allclose(image[..., 0], rgb.astype(np.float64).mean(axis=-1), rtol=1e-6)
    assert not image[..., 1].any()
