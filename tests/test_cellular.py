"""The cellular task: readers of both layouts, normalisation, augmentation, loss,
metrics, and the command-line chain from synthetic files to served masks."""

import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from conformance import StudyConformance, predict_files
from conftest import assert_one_line_error, call_without_biomodels, run_cli, run_reference_script

TINY = ["nbase=4,8,16,32", "crop_size=32", "batch_size=2", "synthetic_images=6", "synthetic_shape=64,64"]


@pytest.fixture
def task():
    from biomodels import tasks

    return tasks.get("cellular")


@pytest.fixture
def config(task):
    from biomodels import config as config_lib

    return config_lib.resolve(task, "quick", TINY)


def write_object(folder, name, mask):
    os.makedirs(folder, exist_ok=True)
    Image.fromarray((mask * 255).astype(np.uint8)).save(os.path.join(folder, name))


def square(shape, top, left, size):
    mask = np.zeros(shape, bool)
    mask[top:top + size, left:left + size] = True
    return mask


@pytest.fixture
def cellular_dir(tmp_path):
    """Two 32×32 images in the CELLULAR layout: classes fed and starved, one overlap."""
    root = tmp_path / "cellular"
    os.makedirs(root / "images")
    for name in ("ST_A01", "ST_C03"):
        tifffile.imwrite(root / "images" / f"{name}.tif", np.random.default_rng(0).integers(0, 4000, (32, 32), np.uint16))
    masks = root / "masks" / "ST_A01"
    write_object(masks / "fed", "a.png", square((32, 32), 2, 2, 10))
    write_object(masks / "fed", "b.png", square((32, 32), 2, 14, 10))
    write_object(masks / "starved", "c.png", square((32, 32), 18, 2, 12))
    write_object(masks / "starved", "d.png", square((32, 32), 24, 8, 4))  # lies on c
    write_object(root / "masks" / "ST_C03" / "Unidentified", "e.png", square((32, 32), 5, 5, 8))
    write_object(root / "masks" / "ST_C03" / "fed", "f.png", square((32, 32), 20, 20, 8))
    return root


def test_cellular_layout_combines_every_class(task, config, cellular_dir):
    sources = task.bind(config).find_sources(str(cellular_dir))
    assert [s.name for s in sources] == ["ST_A01", "ST_C03"]
    assert sources[0].details["class_names"] == ("Unidentified", "fed", "starved")
    info, examples = task.bind(config).read_source(sources[0])
    (example,) = examples
    labels, classes = example["labels"], example["classes"]
    assert labels.max() == 4 and info["objects"] == 4
    # the small object d on top of c keeps its 16 pixels; c keeps the rest of its 144
    sizes = np.bincount(labels.ravel())[1:]
    assert sorted(sizes.tolist()) == [16, 100, 100, 128]
    assert info["overlapping_objects"] == 2 and info["overlap_pixels"] == 16
    names = np.array(info["class_names"])[classes[1:]]
    assert sorted(names.tolist()) == ["fed", "fed", "starved", "starved"]
    assert names[labels[26, 10] - 1] == "starved" and names[labels[5, 5] - 1] == "fed"
    assert classes[0] == -1
    flows = example["flows"]
    assert flows.shape == (32, 32, 2)
    np.testing.assert_allclose(np.linalg.norm(flows[labels > 0], axis=-1), 1.0, atol=1e-4)
    assert info["diameter"] == pytest.approx(np.sqrt(np.median(sizes)) / (np.sqrt(np.pi) / 2))


def test_min_masks_leaves_out_training_images_only(task, cellular_dir):
    """Cellpose drops training images with fewer than min_masks masks; validation and
    test images are all scored, so prepare keeps them and only training skips them."""
    import tensorflow as tf

    from biomodels import config as config_lib

    config = config_lib.resolve(task, "quick", ["min_masks=3"])
    sources = task.bind(config).find_sources(str(cellular_dir))
    few = [task.bind(config).read_source(source) for source in sources]
    counts = [info["objects"] for info, _ in few]
    assert counts == [4, 2] and all(len(examples) == 1 and "skipped" not in info for info, examples in few)
    kept = [bool(task.bind(config).keep_for_training({k: tf.constant(v) for k, v in examples[0].items()}))
            for _, examples in few]
    assert kept == [True, False]
    from biomodels.errors import ConfigError
    from biomodels.tasks.cellular.data import check_training_images

    from biomodels.pipelines.manifest import Manifest, Source

    manifest = Manifest("cellular", sources=(Source("a", split="train", details={"objects": 4}),
                                             Source("b", split="test", details={"objects": 9})))
    check_training_images(manifest, config)
    with pytest.raises(ConfigError, match="min_masks=5: no training image has that many masks \\(the most is 4\\)"):
        check_training_images(manifest, config_lib.resolve(task, "quick", ["min_masks=5"]))


def test_an_epoch_of_steps_per_epoch_0_is_one_pass_with_a_smaller_last_batch(task, tmp_path):
    """As Cellpose's train_seg: every kept training image once an epoch, in a new order
    each epoch, the last batch smaller; the run counts the images min_masks keeps and
    trains that many steps an epoch."""
    import dataclasses

    import keras

    from biomodels import config as config_lib
    from biomodels.pipelines import dataset as dataset_lib
    from biomodels.pipelines import manifest as manifest_lib
    from biomodels.prepare import prepare_dataset
    from biomodels.training import RunOptions, TrainingRun, train

    # a Cellpose folder: image i holds 1 + i % 4 squares of side 6 + i (its mean diameter names it)
    folder, rng = tmp_path / "images", np.random.default_rng(0)
    folder.mkdir()
    for index in range(14):
        labels = np.zeros((64, 64), np.uint16)
        for cell, (top, left) in enumerate([(2, 2), (2, 34), (34, 2), (34, 34)][:1 + index % 4]):
            labels[top:top + 6 + index, left:left + 6 + index] = cell + 1
        tifffile.imwrite(folder / f"img_{index:02d}.tif", (rng.integers(0, 50, (64, 64)) + 900 * (labels > 0)).astype(np.uint16))
        tifffile.imwrite(folder / f"img_{index:02d}_masks.tif", labels)
    config = config_lib.resolve(task, "quick", TINY + ["batch_size=4", "steps_per_epoch=0", "epochs=2", "min_masks=3",
                                                       "val_pattern=img_12", "test_pattern=img_13"])
    data_dir = str(tmp_path / "prepared")
    prepare_dataset(task, config, data_dir, input_path=str(folder), show_progress=False)
    bound = task.bind(config, manifest=manifest_lib.read(data_dir, task))
    # images 2, 3, 6, 7, 10, 11, by diameter (Cellpose's: of the disc of a square's area)
    kept = [2 * (6.0 + index) / np.sqrt(np.pi) for index in range(12) if 1 + index % 4 >= 3]
    assert bound.manifest.count("train") == 12 and dataset_lib.kept_count(bound) == len(kept) == 6
    bound.model_io = lambda example: (example["diameter"], example["diameter"])
    batches = [batch[0].numpy().tolist() for batch in
               dataset_lib.training_dataset(bound, 0, steps_per_epoch=2, one_pass=True).take(4)]
    epochs = [batches[:2], batches[2:]]
    for epoch in epochs:
        assert [len(batch) for batch in epoch] == [4, 2]
        assert sorted(sum(epoch, [])) == pytest.approx(kept, rel=1e-3)
    assert sum(epochs[0], []) != sum(epochs[1], [])

    run = TrainingRun(task, config, data_dir, str(tmp_path / "run"), RunOptions(export=False))
    assert run.steps_per_epoch == 2 and run.one_pass
    from biomodels.errors import InputError

    with pytest.raises(InputError, match="training uses none of the train split's examples"):
        TrainingRun(task, dataclasses.replace(config, min_masks=5), data_dir, str(tmp_path / "none"))
    train(task, config, data_dir, str(tmp_path / "run"), RunOptions(export=False, verbose=0))
    import biomodels.models  # noqa: F401  registers the custom classes

    last = keras.saving.load_model(tmp_path / "run" / "last.keras")
    assert int(last.optimizer.iterations) == 2 * 2


def test_skip_classes_and_split_patterns(task, cellular_dir):
    from biomodels import config as config_lib
    from biomodels.errors import InputError

    config = config_lib.resolve(task, "quick", TINY + ["skip_classes=Unidentified", "test_pattern=ST_C0[0-9]"])
    sources = task.bind(config).find_sources(str(cellular_dir))
    assert sources[1].details["class_names"] == ("fed", "starved")
    info, (example,) = task.bind(config).read_source(sources[1])
    assert example["labels"].max() == 1 and info["objects"] == 1
    assert [task.bind(config).assigned_split(s) for s in sources] == ["train", "test"]
    plain = config_lib.resolve(task, "quick", TINY)
    assert task.bind(plain).assigned_split(sources[0]) is None
    typo = config_lib.resolve(task, "quick", TINY + ["val_pattern=ST_X99"])
    with pytest.raises(InputError, match="no image name matches --set val_pattern=ST_X99"):
        task.bind(typo).find_sources(str(cellular_dir))


def test_cellpose_folder_layout_and_channels(task, config, tmp_path):
    folder = tmp_path / "cellpose"
    folder.mkdir()
    rng = np.random.default_rng(1)
    tifffile.imwrite(folder / "img1.tif", rng.integers(0, 255, (2, 40, 48), np.uint8))  # channels first
    labels = np.zeros((40, 48), np.uint16)
    labels[5:15, 5:15], labels[20:30, 20:40] = 7, 3
    tifffile.imwrite(folder / "img1_masks.tif", labels)
    (source,) = task.bind(config).find_sources(str(folder))
    info, (example,) = task.bind(config).read_source(source)
    assert example["image"].shape == (40, 48, 2)
    assert example["labels"].max() == 2 and set(np.unique(example["labels"])) == {0, 1, 2}
    assert (example["classes"] == -1).all()


def test_percentile_normalisation_matches_numpy(task):
    rng = np.random.default_rng(2)
    images = rng.gamma(2.0, 100.0, size=(2, 30, 20, 2)).astype(np.float32)
    images[1, ..., 1] = 5.0  # a constant channel becomes zero
    result = np.asarray(task.preprocess(images))
    for index in range(2):
        low, high = np.percentile(images[0, ..., index], [1, 99])
        np.testing.assert_allclose(result[0, ..., index], (images[0, ..., index] - low) / (high - low), rtol=1e-4, atol=1e-5)
    assert (result[1, ..., 1] == 0).all()


def test_augmented_flows_agree_with_flows_recomputed_from_the_transformed_mask(task, config):
    import dataclasses

    import tensorflow as tf

    from biomodels.ops.flows import masks_to_flows
    from biomodels.pipelines.synthetic.cellular import cell_labels

    labels, _, _ = cell_labels(np.random.default_rng(3), (48, 48), 6, radius_range=(6, 9))
    labels = np.pad(labels, 24)  # cells well inside, so no crop cuts one
    example = {"image": np.zeros(labels.shape + (2,), np.float32), "labels": labels, "diameter": np.float32(30),
               "flows": masks_to_flows(labels).transpose(1, 2, 0), "classes": np.zeros(labels.max() + 1, np.int32)}
    config = dataclasses.replace(config, crop_size=96, scale_range=(1.0, 1.0), diameter_mean=30.0)
    angles_seen = 0
    for seed in range(4):
        out = task.bind(config).augment(example, tf.constant([seed, 11], tf.int64))
        moved, flows = out["labels"].numpy(), out["flows"].numpy()
        assert moved.max() == labels.max() and abs(np.count_nonzero(moved) - np.count_nonzero(labels)) < 0.1 * np.count_nonzero(labels)
        recomputed = masks_to_flows(moved).transpose(1, 2, 0)
        inside = moved > 0
        cosine = (flows[inside] * recomputed[inside]).sum(-1) / np.maximum(
            np.linalg.norm(flows[inside], axis=-1) * np.linalg.norm(recomputed[inside], axis=-1), 1e-6)
        assert cosine.mean() > 0.9, (seed, cosine.mean())
        angles_seen += not np.array_equal(moved, labels)
    assert angles_seen == 4



def test_masks_follow_the_flows_200_steps_over_the_scale_as_cellposes_eval(monkeypatch):
    """Cellpose's eval (resample=True) follows 200 / rescale steps: cells of 20 pixels
    under a network of 30 (scale 1.5) take 133, cells of 60 (scale 0.5) 400."""
    from biomodels.ops import flows
    from biomodels.tasks.cellular.image_maps import flow_steps
    from biomodels.tasks.cellular.inference import segment

    assert [flow_steps(scale) for scale in (1.0, 30 / 20, 0.5, 1000.0)] == [200, 133, 400, 1]
    steps = []
    monkeypatch.setattr(flows, "masks_from_flows", lambda *args, niter, **kwargs: steps.append(niter) or np.zeros((4, 4)))
    network = lambda tiles: {"flows": tiles[..., :2] * 0, "cellprob": tiles[..., 0]}  # noqa: E731
    for scale in (1.0, 1.5, 0.5):
        segment(network, np.zeros((40, 40, 2), np.float32), scale, {}, tile=None, overlap=8, batch_size=2)
    assert steps == [200, 133, 400]


def test_whole_images_get_cellposes_border_of_background(task, config):
    """The network sees a whole image inside 8 pixels of zeros (background once
    normalised), as Cellpose's run_net pads it: without them it missed 10 of 180 cells
    cut by the edge of a 512×512 image, which Cellpose's eval found. Tiles of an image
    get no border of their own; predict adds it to the whole image before tiling."""
    from biomodels.models import CellposeNet
    from biomodels.tasks.cellular.image_maps import network_maps, network_tiles

    calls = []

    class Pixelwise:
        def __call__(self, signature, images):
            calls.append((signature, images.shape))
            return {"flows": images[..., :2] * 0.5, "cellprob": images[..., 0] - images[..., 1]}

    image = np.random.default_rng(0).random((40, 56, 2)).astype(np.float32)
    normalised = lambda tiles: Pixelwise()("normalised", images=tiles)  # noqa: E731  the model's signature
    maps = network_maps(normalised, image, 1.0, tile=512, overlap=64, batch_size=4)
    assert calls == [("normalised", (1, 56, 72, 2))]  # one tile: the image and its border
    np.testing.assert_allclose(maps, np.dstack([image * 0.5, image[..., 0] - image[..., 1]]), atol=1e-6)
    network_maps(normalised, np.zeros((600, 40, 2), np.float32), 1.0, tile=512, overlap=64, batch_size=4)
    assert [shape for _, shape in calls[1:]] == [(2, 528, 56, 2)]  # --tile counts the image's pixels, not the border
    # no --tile: the fewest even tiles of at most TILE_PIXELS, as many a call as fit it
    del calls[:]
    network_maps(normalised, np.zeros((600, 40, 2), np.float32), 1.0, tile=None, overlap=64, batch_size=4)
    assert [shape for _, shape in calls] == [(1, 616, 56, 2)]  # fits: whole, with its border
    assert network_tiles((2064, 2064), None, 64, 8) == ((1064, 2064), 1)  # a 2048² image: two tiles, one a call
    assert network_tiles((528, 528), None, 64, 8) == ((528, 528), 8)  # slices of a stack: 8 a call
    assert network_tiles((4000, 3000), None, 64, 8) == ((1376, 1532), 1)  # six tiles of 2.1 million pixels
    assert network_tiles((2064, 2064), 512, 64, 8) == ((528, 528), 8)  # --tile: square, batch_size a call

    model = CellposeNet(nchan=2, nbase=(4, 8, 16, 32))
    functions = task.bind(config).serving_functions(model)
    raw = np.random.default_rng(1).uniform(0, 500, (1, 24, 40, 2)).astype(np.float32)
    whole = functions["serving_default"](images=raw)["cellprob"].numpy()
    normalised = np.asarray(task.bind(config).preprocess(raw))
    bordered = functions["normalised"](images=np.pad(normalised, ((0, 0), (8, 8), (8, 8), (0, 0))))["cellprob"]
    np.testing.assert_allclose(whole, bordered.numpy()[:, 8:-8, 8:-8], atol=1e-5)
    assert np.abs(functions["normalised"](images=normalised)["cellprob"].numpy() - whole).max() > 1e-3


def test_training_targets_are_packed_and_read_by_name(task, config):
    """model_io packs the parts the loss and the metrics read by name; padding is -1."""
    import tensorflow as tf

    from biomodels.ops.cellpose_parts import target_part

    labels = np.array([[0, 1, 1], [2, 2, 0], [0, 0, 0]], np.uint16)
    flows = np.random.default_rng(0).uniform(-1, 1, (3, 3, 2)).astype(np.float32)
    example = {"image": tf.zeros([3, 3, 2]), "labels": labels, "flows": flows, "classes": np.array([0, 2, 1], np.int32)}
    _, targets = task.bind(config).model_io(example)
    targets = targets.numpy()
    from biomodels.tasks.cellular.config import size_multiple

    multiple = size_multiple(config)  # padded to the network's size step
    assert targets.shape == (multiple, multiple, 5) and multiple > 3
    np.testing.assert_array_equal(target_part(targets, "label")[:3, :3], labels)
    np.testing.assert_array_equal(target_part(targets, "cell")[:3, :3], labels > 0)
    np.testing.assert_array_equal(target_part(targets, "pixel_class")[:3, :3], [[0, 2, 2], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(target_part(targets, "flows")[:3, :3], flows)
    assert (target_part(targets, "label")[3:] == -1).all()


def test_loss_on_known_values():
    from biomodels.models import CellposeLoss

    y_true = np.zeros((1, 2, 2, 5), np.float32)
    y_true[0, 0, 0] = [1, 0, 1, 1, 0]      # a cell pixel flowing down
    y_true[0, 1, 1, 3] = -1                # padding: left out
    y_pred = np.zeros((1, 2, 2, 3), np.float32)
    y_pred[0, 0, 0] = [5, 0, 0]            # exact flows, logit 0
    loss = float(CellposeLoss()(y_true, y_pred))
    # three valid pixels: flow errors 0; BCE of logit 0 is log 2 each
    assert loss == pytest.approx(np.log(2), rel=1e-5)
    y_pred[0, 0, 0, 0] = 3                 # 2 short of 5·1 in dY
    assert float(CellposeLoss()(y_true, y_pred)) == pytest.approx(np.log(2) + (4 / 2 / 2) / 3, rel=1e-5)


def test_scores_per_class_on_hand_made_labels():
    from biomodels.tasks.cellular.metrics import metrics_rows, score_images

    true = np.zeros((20, 20), np.int32)
    true[0:5, 0:5], true[10:15, 10:15] = 1, 2
    pixel_classes = np.where(true == 1, 0, np.where(true == 2, 1, -1))
    pred = np.zeros_like(true)
    pred[0:5, 0:5] = 4                     # finds cell 1 (class "fed") exactly
    pred[16:20, 16:20] = 9                 # overlaps nothing
    metrics = score_images([true], [pred], [pixel_classes], ["fed", "starved"], (0.5,))
    assert metrics["ap@0.5"] == pytest.approx(1 / 3)
    # the stray cell could be of either class: a false positive in each
    assert metrics["fed/ap@0.5"] == pytest.approx(1 / 2) and metrics["starved/ap@0.5"] == 0.0
    assert metrics["fed/pixel_precision"] == pytest.approx(25 / 41) and metrics["starved/pixel_precision"] == 0.0
    assert metrics["pixel_precision"] == pytest.approx(25 / 41) and metrics["pixel_recall"] == 0.5
    assert metrics["true_cells"] == 2 and metrics["predicted_cells"] == 2
    assert metrics["predicted_cells_touching_no_true_cell"] == 1
    header, rows = metrics_rows({**metrics, "ap@0.75": 0, "ap@0.9": 0, "fed/ap@0.75": 0, "fed/ap@0.9": 0,
                                 "starved/ap@0.75": 0, "starved/ap@0.9": 0}, (0.5, 0.75, 0.9))
    assert header[0] == "cells" and [row[0] for row in rows][:3] == ["all (2)", "fed (1)", "starved (1)"]
    assert rows[3][0] == "predicted cells touching no true cell: 1 (false positives in every class)"


def test_bad_inputs_give_one_line(tmp_path, cellular_dir):
    def prepare(path, *sets):
        return run_cli("biomodels.prepare", "--task=cellular", f"--input={path}",
                       f"--output_dir={tmp_path / 'out'}", *[f"--set={s}" for s in sets])

    write_object(cellular_dir / "masks" / "ST_A01" / "fed", "big.png", np.ones((40, 40), bool))
    assert_one_line_error(prepare(cellular_dir), "big.png", "40×40", "ST_A01.tif is 32×32")
    os.remove(cellular_dir / "masks" / "ST_A01" / "fed" / "big.png")
    os.makedirs(cellular_dir / "masks" / "ST_A01" / "empty")
    assert_one_line_error(prepare(cellular_dir), "empty", "no object masks")
    os.rmdir(cellular_dir / "masks" / "ST_A01" / "empty")
    tifffile.imwrite(cellular_dir / "images" / "ST_Z09.tif", np.zeros((32, 32), np.uint16))
    assert_one_line_error(prepare(cellular_dir), "ST_Z09.tif", "has no masks")

    folder = tmp_path / "cellpose"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", np.zeros((16, 16), np.uint16))
    tifffile.imwrite(folder / "a_masks.tif", np.full((16, 16), -1, np.int16))
    assert_one_line_error(prepare(folder), "a_masks.tif", "negative")
    tifffile.imwrite(folder / "a_masks.tif", np.full((16, 16), 1.5, np.float32))
    assert_one_line_error(prepare(folder), "a_masks.tif", "whole numbers")
    assert not (tmp_path / "out").exists()


class TestCellularConformance(StudyConformance):
    task_name = "cellular"
    settings = TINY
    train_flags = ("--epochs=1", "--steps_per_epoch=3")
    # masks computed in the graph, a server's default: the masks travel, no flows
    served_options = {"diameter": 24.0, "cellprob_threshold": -100.0, "masks_in": "graph"}
    served_files = ["cells_cp_masks.tif", "cells_cp_output.png"]

    def write_input(self, folder):
        folder.mkdir()
        tifffile.imwrite(folder / "cells.tif", np.random.default_rng(6).integers(0, 4000, (70, 60), np.uint16))
        return folder

    def assert_python_equals_files(self, run, path, files, tmp_path):
        import biomodels
        from biomodels.pipelines.synthetic import cellular

        cellular.write_dataset(str(tmp_path / "in"), 1, seed=3, shape=(64, 64))  # cells, not noise
        [image] = (tmp_path / "in" / "images").iterdir()
        predict_files("cellular", run, image, files, diameter=20, cellprob_threshold=-2)
        model = biomodels.load(run)
        result = model.predict(image, diameter=20, cellprob_threshold=-2)
        np.testing.assert_array_equal(result.masks, tifffile.imread(files / f"{image.stem}_cp_masks.tif"))
        flows = tifffile.imread(files / f"{image.stem}_cp_flows.tif")
        np.testing.assert_allclose(result.flows, flows[:2], atol=1e-5)
        np.testing.assert_allclose(result.cellprob, flows[2], atol=1e-5)
        assert result.diameter == 20.0 and result.masks.shape == flows.shape[1:]
        # the masks computed in the graph, as a server answers them
        graph = model.predict(image, diameter=20, cellprob_threshold=-2, masks_in="graph")
        assert graph.flows is None and graph.masks.shape == result.masks.shape

    def write_damaged_input(self, folder):
        path = self.write_input(folder) / "cells.tif"
        path.write_bytes(path.read_bytes()[:300])
        return path, "not a readable image"

    def bad_arrays(self):
        from biomodels.errors import ConfigError, InputError

        return [(np.zeros((32, 32)), {"diamter": 20}, ConfigError, "unknown option 'diamter'; the options are: .*diameter"),
                (np.zeros((32, 32)), {"diameter": 0.5}, ConfigError,
                 r"diameter=0.5: must be 0 \(estimated for each image\) or at least 1"),
                (np.zeros((2, 3, 32, 32)), {}, InputError, "expected a 2-D image with at most 4 channels")]


@pytest.fixture(scope="module")
def cellular_run(tmp_path_factory):
    run = TestCellularConformance.trained(tmp_path_factory)
    return run.root, run.model_dir, run.trained


def test_command_line_chain(cellular_run, tmp_path):
    root, model_dir, result = cellular_run
    assert "AP@0.5" in result.stdout and "all (" in result.stdout
    metrics = json.loads((model_dir / "metrics_test.json").read_text())
    assert 0.0 <= metrics["ap@0.5"] <= 1.0 and metrics["images"] >= 1
    for name in {key.split("/")[0] for key in metrics if "/" in key}:
        assert name in ("fed", "starved", "unidentified") and f"{name} (" in result.stdout
    calibration = json.loads((model_dir / "calibration.json").read_text())
    assert 15 < calibration["training_diameter"] < 45

    evaluated = run_cli("biomodels.evaluate", "--task=cellular", f"--model_dir={model_dir}", "--split=val",
                        "--flow_threshold=0", "--cellprob_threshold=100", "--min_size=0")
    assert evaluated.returncode == 0, evaluated.stderr
    # no pixel is above a logit of 100: nothing is found
    assert json.loads((model_dir / "metrics_val.json").read_text())["predicted_cells"] == 0

    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "big.tif", np.random.default_rng(0).integers(0, 4000, (2, 150, 90), np.uint16))
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 50), np.uint8)).save(images / "small.png")
    output = tmp_path / "predicted"
    predicted = run_cli("biomodels.predict", "--task=cellular", f"--model={model_dir / 'export'}", f"--input={images}",
                        f"--output={output}", "--tile=64", "--overlap=16", "--diameter=20", "--channels=0,1",
                        "--cellprob_threshold=-100", "--flow_threshold=0.8")
    assert predicted.returncode == 0, predicted.stderr
    assert sorted(os.listdir(output)) == sorted(f"{n}_{k}" for n in ("big", "small")
                                                for k in ("cp_masks.tif", "cp_flows.tif", "cp_output.png"))
    masks = tifffile.imread(output / "big_cp_masks.tif")
    assert masks.shape == (150, 90) and masks.dtype == np.uint16
    assert tifffile.imread(output / "big_cp_flows.tif").shape == (3, 150, 90)
    assert np.asarray(Image.open(output / "small_cp_output.png")).shape == (40, 50, 3)

    bad = run_cli("biomodels.predict", "--task=cellular", f"--model={model_dir}", f"--input={images}",
                  f"--output={tmp_path / 'other'}", "--channels=a,b")
    assert_one_line_error(bad, "--channels=a,b")


@pytest.mark.slow
def test_predictions_keep_their_meaning_in_cellpose_and_imagej(cellular_run, tmp_path):
    """Predictions written beside training images and their true masks: ImageJ sees a
    16-bit label image and a 3-channel float hyperstack; Cellpose 3.1.1.2, reading the
    folder as training data, finds the images with their true masks and no flows."""
    _, model_dir, _ = cellular_run
    folder = tmp_path / "cellpose"
    folder.mkdir()
    rng = np.random.default_rng(3)
    truths = {}
    for name in ("a", "b"):
        tifffile.imwrite(folder / f"{name}.tif", rng.integers(0, 4000, (64, 48), np.uint16))
        truths[name] = np.kron(rng.integers(0, 5, (8, 6)), np.ones((8, 8), np.int64)).astype(np.uint16)
        tifffile.imwrite(folder / f"{name}_masks.tif", truths[name])
    for _ in range(2):  # a second run over the same folder sees the same two images, not its outputs
        predicted = run_cli("biomodels.predict", "--task=cellular", f"--model={model_dir / 'export'}", f"--input={folder}",
                            f"--output={folder}", "--cellprob_threshold=-100")
        assert predicted.returncode == 0, predicted.stderr
        assert "Wrote 6 file(s)" in predicted.stdout
    with tifffile.TiffFile(folder / "a_cp_flows.tif") as flows:
        assert flows.is_imagej and flows.series[0].axes == "CYX" and flows.series[0].dtype == np.float32
        assert flows.imagej_metadata["channels"] == 3 and flows.imagej_metadata["Labels"] == ["dY", "dX", "cellprob"]
    with tifffile.TiffFile(folder / "a_cp_masks.tif") as masks:
        assert masks.is_imagej and masks.series[0].axes == "YX" and masks.series[0].dtype == np.uint16

    found_dir = tmp_path / "found"
    found_dir.mkdir()
    run_reference_script("cellpose_folder.py", folder, found_dir)
    found = json.loads((found_dir / "found.json").read_text())
    assert found["images"] == ["a.tif", "b.tif"]
    for index, name in enumerate(found["images"]):
        np.testing.assert_array_equal(np.load(found_dir / f"label_{index}.npy"), truths[name[0]])  # masks, no flows
    assert found["predictions"]["a_cp_masks.tif"] == [[64, 48], "uint16"]
    assert found["predictions"]["a_cp_flows.tif"][0] == [3, 64, 48]


def test_synthetic_images_open_in_imagej_as_two_channels(tmp_path):
    from biomodels.pipelines.synthetic import cellular as synthetic

    synthetic.write_dataset(str(tmp_path), 1, 0, (64, 64))
    [path] = (tmp_path / "images").iterdir()
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.imagej_metadata["channels"] == 2 and tif.series[0].axes == "CYX"
        assert tif.series[0].shape == (2, 64, 64) and tif.series[0].dtype == np.uint16


def test_export_signatures_in_a_fresh_process(cellular_run, tmp_path, task):
    _, model_dir, _ = cellular_run
    images = np.random.default_rng(0).uniform(0, 3000, (2, 44, 36, 1)).astype(np.float32)
    arrays, dtypes = call_without_biomodels(tmp_path, model_dir / "export", {"serving_default": {"images": images}})
    outputs = arrays["serving_default"]
    assert outputs["flows"].shape == (2, 44, 36, 2) and outputs["cellprob"].shape == (2, 44, 36)
    assert outputs["style"].shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(outputs["style"], axis=-1), 1.0, rtol=1e-4)
    assert dtypes["serving_default"] == {"flows": "float32", "cellprob": "float32", "style": "float32"}
    # the graph normalises: the same images at another intensity scale give the same outputs
    again, _ = call_without_biomodels(tmp_path, model_dir / "export", {"serving_default": {"images": images * 7 + 100}})
    np.testing.assert_allclose(again["serving_default"]["flows"], outputs["flows"], atol=1e-4)


def test_init_from_cellpose_checkpoint(cellular_run, tmp_path, task, config):
    from biomodels.training import _initial_weights, _set_initial_weights

    run_reference_script("cpnet_outputs.py", tmp_path, "2,4,8,16,32", 32, 5)
    checkpoint = str(tmp_path / "cpnet.pth")
    model = task.bind(config).build_model()
    _set_initial_weights(model, _initial_weights(task.bind(config), checkpoint), checkpoint)
    images = np.load(tmp_path / "images.npy").transpose(0, 2, 3, 1)
    expected = np.load(tmp_path / "maps.npy").transpose(0, 2, 3, 1)
    assert np.abs(np.asarray(model(images, training=False)) - expected).max() < 1e-4

    root, _, _ = cellular_run
    wrong = run_cli("biomodels.train", "--task=cellular", f"--data_dir={root / 'data'}", f"--model_dir={tmp_path / 'run2'}",
                    "--epochs=1", f"--init_from={checkpoint}", *[f"--set={s}" for s in TINY[1:]])
    assert_one_line_error(wrong, "cpnet.pth", "widths [4, 8, 16, 32]", "--set nbase=4,8,16,32")
    other = run_cli("biomodels.train", "--task=cellular", f"--data_dir={root / 'data'}", f"--model_dir={tmp_path / 'run3'}",
                    "--epochs=1", f"--init_from={tmp_path / 'other.pth'}", *[f"--set={s}" for s in TINY])
    assert_one_line_error(other, "other.pth", "not a Cellpose CPnet")
    missing = run_cli("biomodels.train", "--task=cellular", f"--data_dir={root / 'data'}", f"--model_dir={tmp_path / 'run4'}",
                      "--epochs=1", f"--init_from={tmp_path / 'cyto2torch_0'}", *[f"--set={s}" for s in TINY])
    assert_one_line_error(missing, "cyto2torch_0", "no such file")
    assert not any((tmp_path / name).exists() for name in ("run2", "run3", "run4"))


def test_serving_warmup_and_bioimageio_package(tmp_path, task, config):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from biomodels.errors import InputError
    from biomodels.export import serving
    from biomodels.export.bioimageio import write_package

    model = task.bind(config).build_model()
    # Every cell-probability logit negative, as an untrained network can give: the case
    # bioimage.io's validator refuses any absolute tolerance for (CI met it by chance).
    kernel, bias = model.get_layer("output.2").get_weights()
    model.get_layer("output.2").set_weights([kernel, bias - np.array([0.0, 0.0, 100.0], np.float32)])
    path = serving.export_version(task, model, config, str(tmp_path / "serving"))
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "normalised", "instances", "masks"}
    warmed = set()
    for record in tf.data.TFRecordDataset(os.path.join(path, serving.WARMUP_FILE)).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        warmed.add(request.model_spec.signature_name)
        outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        if "flows" in outputs:
            assert outputs["flows"].shape[1:] == (32, 32, 2) and np.isfinite(outputs["cellprob"].numpy()).all()
        if "masks" in outputs:  # every logit is negative: no cell
            assert outputs["masks"].dtype == tf.int32 and outputs["masks"].shape[1:] == (32, 32)
            assert outputs["masks"].numpy().max() == 0
    assert warmed == {"serving_default", "instances", "masks"}  # `normalised` is serving_default after normalising
    # the package's test output would be masks of no cell, which bioimage.io refuses: one line, no package
    with pytest.raises(InputError, match="only zeros"):
        write_package(task, path, config, str(tmp_path / "1.bioimageio.zip"))
    assert not os.path.exists(tmp_path / "1.bioimageio.zip")


def test_blocks_on_workers_write_the_blocks_of_one_process_and_ome_zarr_in_gives_ome_zarr_out(
        cellular_run, tmp_path, dask_scheduler):
    """One image in blocks of 64 pixels through the command on the workers (TIFF in, an
    OME-Zarr label image out) equals the same blocks run in this process; an OME-Zarr
    image predicted whole gives OME-Zarr masks with its pixel size, equal to the TIFF's."""
    from biomodels.pipelines import ome_zarr
    from biomodels.pipelines.synthetic import cellular

    _, model_dir, _ = cellular_run
    cellular.write_dataset(str(tmp_path / "in"), 1, seed=3, shape=(160, 144))
    [image] = (tmp_path / "in" / "images").iterdir()
    options = ["--diameter=20", "--cellprob_threshold=-100", "--flow_threshold=0", "--block=64"]
    for out, scheduler in (("here", []), ("workers", [f"--scheduler={dask_scheduler}"])):
        result = run_cli("biomodels.predict", "--task=cellular", f"--model={model_dir}", f"--input={image}",
                         f"--output={tmp_path / out}", *options, *scheduler)
        assert result.returncode == 0, result.stderr
    name = f"{image.stem}_cp_masks.zarr"
    assert os.listdir(tmp_path / "workers") == [name]
    here, workers = (np.asarray(ome_zarr.Image(str(tmp_path / out / name)).array) for out in ("here", "workers"))
    assert here.shape == (160, 144) and here.max() > 0
    np.testing.assert_array_equal(workers, here)
    # OME-Zarr in, predicted whole: OME-Zarr masks with the pixel size kept, equal to the TIFF's masks
    ome_zarr.write_image(str(tmp_path / "zarr" / "cells.zarr"), tifffile.imread(image), "cyx", (1.0, 650.0, 650.0))
    predict_files("cellular", model_dir, tmp_path / "zarr" / "cells.zarr", tmp_path / "from_zarr", diameter=20,
                  cellprob_threshold=-100, flow_threshold=0)
    predict_files("cellular", model_dir, image, tmp_path / "from_tiff", diameter=20, cellprob_threshold=-100,
                  flow_threshold=0)
    masks = ome_zarr.Image(str(tmp_path / "from_zarr" / "cells_cp_masks.zarr"))
    assert masks.voxel_size("xy") == (650.0, 650.0) and masks.spatial("yx").max() > 0
    np.testing.assert_array_equal(masks.spatial("yx"), tifffile.imread(tmp_path / "from_tiff" / f"{image.stem}_cp_masks.tif"))


def test_a_trained_run_fits_its_own_size_model_and_estimates_sizes(cellular_run, tmp_path):
    """calibrate fits a size model on the training images (Cellpose's regression on the
    run's own styles), kept in calibration.json and the export, so --diameter=0 works
    for biomodels' runs too."""
    import biomodels
    from biomodels.pipelines.synthetic import cellular

    _, model_dir, _ = cellular_run
    calibration = json.loads((model_dir / "calibration.json").read_text())
    size_model = calibration["size_model"]
    assert len(size_model["A"]) == len(size_model["smean"]) == 32 and size_model["diam_mean"] == 30.0
    assert json.loads((model_dir / "export" / "export.json").read_text())["calibration"]["size_model"] == size_model
    cellular.write_dataset(str(tmp_path / "in"), 1, seed=3, shape=(64, 64))
    [image] = (tmp_path / "in" / "images").iterdir()
    for source in (model_dir, model_dir / "export"):
        result = biomodels.load(source).predict(image, diameter=0)
        assert 5.0 <= result.diameter and result.masks.shape == (64, 64)


def test_the_synthetic_generator_draws_what_the_whole_image_formulation_draws(monkeypatch):
    """cell_labels and render work in each cell's box: the pixels their per-cell array
    operations visit for a 512×512 image of 180 cells are a few times the image (the
    whole-image formulation visits each pixel once per cell, 180 times); and the same
    seed gives the images of that straightforward formulation below, which compares
    every placement with every cell and draws every cell over the whole image."""
    from scipy import ndimage

    from biomodels.pipelines.synthetic import cellular as synthetic

    def whole_image_labels(rng, shape, count, radius_range=(11.0, 19.0)):
        height, width = shape
        centres, radii = [], []
        for _ in range(count * 40):
            if len(centres) == count:
                break
            radius = rng.uniform(*radius_range)
            centre = rng.uniform([-radius * 0.3, -radius * 0.3], [height + radius * 0.3, width + radius * 0.3])
            if all(np.hypot(*(centre - c)) > 0.68 * (radius + r) for c, r in zip(centres, radii)):
                centres.append(centre)
                radii.append(radius)
        yy, xx = np.mgrid[:height, :width].astype(np.float32)
        best, labels = np.full(shape, 1.0, np.float32), np.zeros(shape, np.int32)
        for index, (centre, radius) in enumerate(zip(centres, radii), start=1):
            dy, dx = yy - centre[0], xx - centre[1]
            angle = np.arctan2(dy, dx)
            outline = radius * (1 + sum(rng.uniform(0, 0.12) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
                                        for k in (2, 3, 5)))
            depth = np.hypot(dy, dx) / outline
            inside = depth < best
            labels[inside], best[inside] = index, depth[inside]
        return synthetic._keep_largest_parts(labels), np.array(centres)

    def whole_image_render(rng, labels, starved_cells):
        height, width = labels.shape
        cytoplasm, nuclei = np.zeros(labels.shape, np.float32), np.zeros(labels.shape, np.float32)
        yy, xx = np.mgrid[:height, :width]
        brightness = rng.uniform(0.5, 1.0, labels.max() + 1)
        brightness[0] = 0
        cytoplasm += brightness[labels]
        puncta = np.zeros(labels.shape, np.float32)
        for index, region in enumerate(ndimage.find_objects(labels), start=1):
            pixels = np.argwhere(labels == index)
            spread = np.sqrt(len(pixels) / np.pi)
            nucleus_centre = pixels.mean(axis=0) + rng.normal(0, 0.15 * spread, 2)
            axes = spread * rng.uniform(0.3, 0.45, 2)
            inside = ((yy - nucleus_centre[0]) / axes[0]) ** 2 + ((xx - nucleus_centre[1]) / axes[1]) ** 2 < 1
            nuclei[inside & (labels == index)] = rng.uniform(0.6, 1.0)
            for y, x in pixels[rng.integers(0, len(pixels), rng.poisson(14 if index in starved_cells else 2))]:
                puncta[y, x] += rng.uniform(3, 6)
        cytoplasm += ndimage.gaussian_filter(puncta, 1.2) * 2.5
        cytoplasm[ndimage.morphological_gradient(labels, size=3) > 0] *= 0.7
        image = np.stack([ndimage.gaussian_filter(cytoplasm, 1.0), ndimage.gaussian_filter(nuclei, 1.5)], axis=-1)
        tilt = 0.6 + 0.8 * (yy / height * rng.uniform(-0.5, 0.5) + xx / width * rng.uniform(-0.5, 0.5) + 0.5)
        image = image * tilt[..., np.newaxis] + rng.uniform(0.05, 0.15)
        photons = rng.uniform(60, 300)
        image = rng.poisson(np.clip(image, 0, None) * photons) / photons + rng.normal(0, 0.02, image.shape)
        return np.clip(image, 0, None).astype(np.float32)

    for seed, shape, count in [(3, (96, 96), 7), (4, (120, 200), 16)]:
        labels, centres, _ = synthetic.cell_labels(np.random.default_rng(seed), shape, count)
        expected, expected_centres = whole_image_labels(np.random.default_rng(seed), shape, count)
        np.testing.assert_array_equal(labels, expected)
        np.testing.assert_array_equal(centres, expected_centres)
        starved = {1, 3}
        np.testing.assert_array_equal(synthetic.render(np.random.default_rng(seed + 10), labels, centres, starved),
                                      whole_image_render(np.random.default_rng(seed + 10), labels, starved))
    visited = []
    for name in ("arctan2", "argwhere"):
        real = getattr(np, name)
        monkeypatch.setattr(np, name, lambda *arrays, real=real: visited.append(np.size(arrays[0])) or real(*arrays))
    rng = np.random.default_rng(0)
    labels, centres, _ = synthetic.cell_labels(rng, (512, 512), 180)
    synthetic.render(rng, labels, centres, set())
    assert labels.max() > 150 and sum(visited) < 6 * 512 * 512
