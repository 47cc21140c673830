"""lch: the adversarial autoencoder, the latent classifier and leave-one-group-out
bookkeeping, crop and metadata reading, the command-line chain and the export."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from biomodels.errors import ConfigError, InputError
from conformance import StudyConformance, predict_files
from conftest import (assert_bioimageio_core_passes, assert_one_line_error, call_without_biomodels, export_package,
                      run_cli)

TINY_LCH = ["image_size=32", "filters=8,16,32", "latent_dim=8", "discriminator_units=16,16,8", "batch_size=8",
            "synthetic_cells=48", "synthetic_cell_lines=4"]
SETS = [arg for item in TINY_LCH for arg in ("--set", item)]


@pytest.fixture
def lch_task():
    from biomodels import tasks

    return tasks.get("lch")


@pytest.fixture
def tiny_lch_config(lch_task):
    from biomodels import config as config_lib

    return config_lib.resolve(lch_task, "quick", TINY_LCH)


def tiny_model(**overrides):
    from biomodels.models import AdversarialAutoencoder

    settings = dict(image_size=32, latent_dim=8, filters=(8, 16, 32), discriminator_units=(16, 16, 8), seed=3)
    settings.update(overrides)
    return AdversarialAutoencoder(**settings)


def random_crops(count, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (count, size, size, 1)).astype(np.float32)


# -- model -----------------------------------------------------------------------
def test_architecture_follows_the_study_at_256_pixels():
    import keras

    keras.utils.set_random_seed(0)  # the initial values are random: the same draw every run
    model = tiny_model(image_size=256, filters=(4, 4, 8, 8, 16, 16), latent_dim=56)
    convs = [layer for layer in model.encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.strides for layer in convs] == [(2, 2)] * 6 and all(layer.kernel_size == (4, 4) for layer in convs)
    assert not any(layer.use_bias for layer in convs)
    assert model.encoder.get_layer("flatten").output.shape[1:] == (4 * 4 * 16,)
    assert model.encoder.output.shape[1:] == (56,)
    deconvs = [layer for layer in model.decoder.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [layer.filters for layer in deconvs] == [16, 8, 8, 4, 4, 1]
    assert model.decoder.output.shape[1:] == (256, 256, 1)
    assert model.discriminator.output.shape[1:] == (1,)
    assert [layer.units for layer in model.discriminator.layers if isinstance(layer, keras.layers.Dense)] == [16, 16, 8, 1]
    kernels = np.concatenate([np.ravel(layer.kernel.numpy()) for layer in convs])
    assert abs(kernels.mean()) < 0.005 and kernels.std() == pytest.approx(0.02, rel=0.15)
    gammas = np.concatenate([np.ravel(layer.gamma.numpy()) for layer in model.encoder.layers
                             if isinstance(layer, keras.layers.BatchNormalization)])
    assert abs(gammas.mean() - 1) < 0.01 and 0.005 < gammas.std() < 0.04
    # each layer its own draw, decided by the seed: layers of one shape differ, the same seed gives the same
    assert not np.array_equal(convs[0].kernel.numpy()[..., :1, :], convs[1].kernel.numpy()[..., :1, :])
    assert not np.array_equal(model.encoder.get_layer("bn1").gamma.numpy(), model.encoder.get_layer("bn2").gamma.numpy())
    keras.utils.set_random_seed(0)
    again = tiny_model(image_size=256, filters=(4, 4, 8, 8, 16, 16), latent_dim=56)
    np.testing.assert_array_equal(again.encoder.get_layer("conv3").kernel.numpy(), convs[2].kernel.numpy())
    with pytest.raises(ValueError, match="multiple"):
        tiny_model(image_size=36)


def test_model_round_trip_keeps_all_three_parts(tmp_path):
    import keras

    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))
    crops = random_crops(16)
    model.fit(crops, epochs=1, batch_size=8, verbose=0)
    path = str(tmp_path / "aae.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    codes = np.asarray(model.encoder(crops, training=False))
    np.testing.assert_allclose(np.asarray(loaded.encoder(crops, training=False)), codes, atol=1e-5)
    np.testing.assert_allclose(np.asarray(loaded.decoder(codes, training=False)),
                               np.asarray(model.decoder(codes, training=False)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(loaded.discriminator(codes, training=False)),
                               np.asarray(model.discriminator(codes, training=False)), atol=1e-5)
    assert loaded.get_config()["filters"] == [8, 16, 32]
    assert loaded.discriminator_optimizer is not None


def test_one_fit_step_updates_every_part():
    import keras

    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), discriminator_optimizer=keras.optimizers.Adam(1e-3))
    before = {part: [w.numpy().copy() for w in getattr(model, part).trainable_weights]
              for part in ("encoder", "decoder", "discriminator")}
    history = model.fit(random_crops(8), epochs=1, batch_size=8, verbose=0).history
    for part, weights in before.items():
        assert any(np.abs(a - b.numpy()).max() > 0 for a, b in zip(weights, getattr(model, part).trainable_weights)), part
    assert set(history) == {"loss", "reconstruction_loss", "adversarial_loss", "discriminator_loss", "discriminator_accuracy"}
    assert all(np.isfinite(values[0]) for values in history.values())
    assert history["loss"][0] == pytest.approx(history["reconstruction_loss"][0] + history["adversarial_loss"][0], rel=1e-4)


STRATEGY_STEPS = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from biomodels.models import AdversarialAutoencoder
crops = np.random.default_rng(0).uniform(0, 1, (16, 32, 32, 1)).astype("float32")
for setting in ("mirrored", "mixed_float16"):
    if setting == "mixed_float16":
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if setting == "mirrored" else tf.distribute.get_strategy()
    with strategy.scope():
        model = AdversarialAutoencoder(32, 8, (8, 16, 32), (16, 16, 8), seed=1)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in model.trainable_weights]
    # dynamic loss scaling skips the first steps while the scale overflows float16: give it more
    epochs = 5 if setting == "mixed_float16" else 1
    history = model.fit(tf.data.Dataset.from_tensor_slices(crops).batch(8), epochs=epochs, verbose=0).history
    changed = sum(bool(np.abs(a - b.numpy()).max() > 0) for a, b in zip(before, model.trainable_weights))
    print(json.dumps({"setting": setting, "replicas": strategy.num_replicas_in_sync, "changed": changed,
                      "weights": len(before), "loss": history["loss"][0],
                      "optimizer": type(model.discriminator_optimizer).__name__,
                      "output": str(model.predict(crops[:2], verbose=0).dtype)}))
"""


def test_fit_under_mirrored_strategy_and_mixed_precision(tmp_path):
    script = tmp_path / "steps.py"
    script.write_text(STRATEGY_STEPS)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    mirrored, mixed = [json.loads(line) for line in result.stdout.strip().splitlines()[-2:]]
    assert (mirrored["setting"], mirrored["replicas"]) == ("mirrored", 2)
    assert (mixed["setting"], mixed["replicas"], mixed["optimizer"]) == ("mixed_float16", 1, "LossScaleOptimizer")
    for report in (mirrored, mixed):
        assert report["changed"] >= report["weights"] - 2 and np.isfinite(report["loss"])
        assert report["output"] == "float32"


# -- latent classifier ---------------------------------------------------------------
def test_logistic_fit_on_separable_codes():
    from biomodels.ops.classification_metrics import roc_auc
    from biomodels.ops.latent_classifier import LinearClassifier, fit_logistic

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    codes = rng.normal(size=(200, 6))
    codes[:, 2] += np.where(labels == 1, 3.0, -3.0)
    classifier = fit_logistic(codes, labels, l2=1.0)
    assert roc_auc(labels, classifier.probabilities(codes)) == 1.0
    assert np.mean((classifier.probabilities(codes) >= 0.5) == labels) > 0.99
    assert abs(classifier.direction[2]) > 0.95 and classifier.direction[2] > 0
    assert np.linalg.norm(classifier.direction) == pytest.approx(1.0)
    # moving along the direction by d raises the logit by d * logit_per_unit
    step = classifier.logits(codes[:1] + 0.5 * classifier.direction) - classifier.logits(codes[:1])
    assert step[0] == pytest.approx(0.5 * classifier.logit_per_unit)
    again = LinearClassifier.from_dict(json.loads(json.dumps(classifier.to_dict())))
    np.testing.assert_allclose(again.probabilities(codes), classifier.probabilities(codes), atol=1e-6)
    # a symmetric one-feature problem: the boundary sits at 0
    symmetric = fit_logistic(np.array([[-2.0], [-1.0], [1.0], [2.0]]), [0, 0, 1, 1], l2=0.1)
    assert symmetric.logits(np.array([[0.0]]))[0] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(codes[:10], np.zeros(10))


def test_leave_one_group_out_never_trains_on_the_held_out_group():
    from biomodels.ops.latent_classifier import leave_one_group_out

    rng = np.random.default_rng(1)
    groups = np.repeat(["a", "b", "c", "d"], 30)
    labels = np.tile(np.repeat([0, 1], 15), 4)
    codes = rng.normal(0, 0.1, (120, 2)) + labels[:, None] * [1.0, 0.0]
    flipped = groups == "d"  # group d's feature runs the other way: learnt only if d were in training
    codes[flipped, 0] = 1.0 - codes[flipped, 0]
    probabilities, unscored = leave_one_group_out(codes, labels, groups, codes, groups, l2=0.1)
    assert not unscored
    predicted = probabilities >= 0.5
    assert np.all(predicted[~flipped] == labels[~flipped])
    assert np.all(predicted[flipped] != labels[flipped])
    # nested selection: the penalty of each held-out group is chosen without its rows
    seen = {}

    def choose(features, labels_left, groups_left):
        held_out = ({"a", "b", "c", "d"} - set(groups_left.tolist())).pop()
        seen[held_out] = sorted(set(groups_left.tolist()))
        return 0.1

    nested, _ = leave_one_group_out(codes, labels, groups, codes, groups, l2=choose)
    assert seen == {g: sorted({"a", "b", "c", "d"} - {g}) for g in "abcd"}
    np.testing.assert_array_equal(nested, probabilities)
    # one class per group: without group "h", only class 0 is left to learn from
    lines = np.array(["h"] * 5 + ["l"] * 5)
    probabilities, unscored = leave_one_group_out(codes[:10], np.repeat([1, 0], 5), lines, codes[:10], lines)
    assert set(unscored) == {"h", "l"} and np.isnan(probabilities).all()


# -- raw data --------------------------------------------------------------------------
def test_file_name_metadata(lch_task, tiny_lch_config):
    import dataclasses

    from biomodels.tasks.lch.data import file_metadata

    metadata = file_metadata("/data/170307_m610-2_s1_t012_p3_f045.png", tiny_lch_config)
    assert metadata == {"date": "170307", "cell_type": "m610-2", "site": "1", "time": "012", "position": "3", "frame": "045"}
    custom = dataclasses.replace(tiny_lch_config, filename_pattern=r"(?P<pdx>\w+?)-(?P<cell>\d+)", cell_type_field="pdx")
    assert file_metadata("A375-17.tif", custom) == {"pdx": "A375", "cell": "17"}
    with pytest.raises(InputError, match="other.png: file name does not match"):
        file_metadata("/data/other.png", tiny_lch_config)
    with pytest.raises(ConfigError, match="named group"):
        file_metadata("A375-17.tif", dataclasses.replace(custom, cell_type_field="cell_type"))


def test_crop_reading_converts_and_refuses(tmp_path, caplog, lch_task, tiny_lch_config):
    import tifffile

    from biomodels.pipelines.readers import write_png
    from biomodels.tasks.lch.data import read_crop

    gray = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    write_png(str(tmp_path / "gray.png"), gray)
    np.testing.assert_allclose(read_crop(str(tmp_path / "gray.png")), gray / 255.0, atol=1e-6)
    write_png(str(tmp_path / "rgb.png"), np.stack([gray] * 3, axis=-1))
    with caplog.at_level("WARNING", logger="biomodels"):
        np.testing.assert_allclose(read_crop(str(tmp_path / "rgb.png")), gray / 255.0, atol=1e-3)
        assert "converted to gray" in caplog.text
        tifffile.imwrite(tmp_path / "wide.tif", np.full((100, 300), 65535, np.uint16))
        crop = lch_task.fit_crop(read_crop(str(tmp_path / "wide.tif")), tiny_lch_config.image_size)
        assert "centred and resized" in caplog.text
    assert crop.shape == (32, 32, 1) and crop.min() == pytest.approx(1.0)
    # the centre square of a wide crop is kept
    wide = np.zeros((64, 192), np.float32)
    wide[:, 64:128] = 1.0
    np.testing.assert_allclose(lch_task.fit_crop(wide, 32), 1.0, atol=1e-6)
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((256, 256, 2), np.uint8), photometric="minisblack", planarconfig="contig")
    with pytest.raises(InputError, match="two.tif: is not a single-channel image"):
        read_crop(str(tmp_path / "two.tif"))
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 0), np.float32))
    with pytest.raises(InputError, match="empty.tif: is too small for a cell crop"):
        read_crop(str(tmp_path / "empty.tif"))
    tifffile.imwrite(tmp_path / "bright.tif", np.full((256, 256), 3.0, np.float32))
    with pytest.raises(InputError, match=r"bright.tif: float intensities must lie in \[0, 1\]"):
        read_crop(str(tmp_path / "bright.tif"))


def test_preprocess_stretches_each_crop_between_its_percentiles(lch_task, tiny_lch_config):
    import dataclasses

    ramp = np.linspace(0.2, 0.6, 32 * 32, dtype=np.float32).reshape(1, 32, 32, 1)
    dim = np.full((1, 32, 32, 1), 0.3, np.float32)
    out = np.asarray(lch_task.bind(tiny_lch_config).preprocess(np.concatenate([ramp, dim])))
    values = np.sort(out[0].ravel())
    assert values[10] == pytest.approx(0.0, abs=1e-6) and values[-11] == pytest.approx(1.0, abs=1e-6)
    assert values[512] == pytest.approx(0.5, abs=0.01)  # linear in between
    assert np.all(out[1] == 0.0)  # a flat crop has no contrast to stretch
    plain = np.asarray(lch_task.bind(dataclasses.replace(tiny_lch_config, intensity_normalisation="none")).preprocess(ramp))
    np.testing.assert_allclose(plain, ramp, atol=1e-6)
    with pytest.raises(ConfigError, match="intensity_normalisation"):
        lch_task.bind(dataclasses.replace(tiny_lch_config, intensity_normalisation="zscore")).preprocess(ramp)


def write_tiny_folder(directory, seed=0):
    from biomodels.pipelines.synthetic import lch as synthetic

    synthetic.write_dataset(str(directory), 12, seed, num_lines=4)
    return directory


def test_the_baseline_sees_raw_brightness_and_contrast(lch_task, tiny_lch_config):
    """Two crops of one pattern, one dim and flat, one bright and contrasted: the network
    sees the same stretched image, the baseline's statistics tell them apart."""
    pattern = np.random.default_rng(0).random((tiny_lch_config.image_size, tiny_lch_config.image_size, 1))
    dim, bright = (np.round(20 + 20 * pattern)).astype(np.uint8), (np.round(100 + 150 * pattern)).astype(np.uint8)
    seen, statistics = [], []
    for crop in (dim, bright):
        batch = {"image": crop[None], "efficiency": np.int64([0]), "cell_line": np.int64([0])}
        image, targets = lch_task.bind(tiny_lch_config).model_io(batch)
        seen.append(np.asarray(image[0]))
        statistics.append(np.asarray(targets["image_statistics"][0], np.float64))
    np.testing.assert_allclose(seen[0], seen[1], atol=0.06)  # the stretch removes brightness and contrast
    raw = [crop.astype(np.float64) / 255 for crop in (dim, bright)]
    for crop, found in zip(raw, statistics):  # numpy's mean, std and percentiles of the raw crop
        expected = [crop.mean(), crop.std(), *np.percentile(crop, [5, 50, 95])]
        np.testing.assert_allclose(found, expected, atol=2e-3)
    assert statistics[1][0] > 3 * statistics[0][0] and statistics[1][1] > 3 * statistics[0][1]


def test_sources_group_crops_by_cell_line_and_check_the_table(tmp_path, lch_task, tiny_lch_config):
    folder = write_tiny_folder(tmp_path / "crops")
    sources = lch_task.bind(tiny_lch_config).find_sources(str(folder))
    assert [source.group for source in sources] == ["pdx01", "pdx02", "pdx03", "pdx04"]
    assert all(len(source.paths) == 4 and source.paths[0].endswith("efficiency.csv") for source in sources)
    info, examples = lch_task.bind(tiny_lch_config).read_source(sources[2])
    assert info["cell_line_index"] == 2 and info["cells"] == 3
    assert examples[0]["image"].shape == (32, 32, 1) and examples[0]["image"].dtype == np.uint8
    assert int(examples[0]["efficiency"]) == (1 if info["efficiency"] == "high" else 0)
    (folder / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="notes.txt: is not a single-cell crop"):
        lch_task.bind(tiny_lch_config).find_sources(str(folder))
    (folder / "notes.txt").unlink()
    rows = list(csv.reader(open(folder / "efficiency.csv")))
    with open(folder / "efficiency.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows[:-1])
    with pytest.raises(InputError, match="efficiency.csv: gives no efficiency for cell type 'pdx04'"):
        lch_task.bind(tiny_lch_config).find_sources(str(folder))
    (folder / "efficiency.csv").unlink()
    with pytest.raises(InputError, match="efficiency.csv: not found"):
        lch_task.bind(tiny_lch_config).find_sources(str(folder))


# -- command lines ---------------------------------------------------------------------------
class TestLCHConformance(StudyConformance):
    task_name = "lch"
    settings = TINY_LCH
    train_flags = ("--epochs=1", "--steps_per_epoch=3")
    # `encode` and `classify` have one output each: TF Serving's REST answer leaves its name out
    served_options = {"batch_size": 3}

    def write_input(self, folder):
        from biomodels.pipelines.synthetic import lch as synthetic

        synthetic.write_dataset(str(folder), 8, 5, 4)
        return folder

    def test_served_predictions_equal_the_local_exports(self, study_run, tmp_path):
        super().test_served_predictions_equal_the_local_exports(study_run, tmp_path)
        header = (tmp_path / "served_rest" / "embeddings.csv").read_text().splitlines()[0]
        assert header.endswith("probability_high")
        assert (tmp_path / "served_rest" / "embeddings.csv").read_text().count("\n") == 9

    def assert_python_equals_files(self, run, path, files, tmp_path):
        import biomodels
        from biomodels.pipelines.synthetic import lch

        lch.write_dataset(str(tmp_path / "in"), 6, seed=2, num_lines=2)
        predict_files("lch", run, tmp_path / "in", files)
        with open(files / "embeddings.csv") as handle:
            rows = list(csv.DictReader(handle))
        model = biomodels.load(run)
        result = model.predict(tmp_path / "in")
        width = model.config.latent_dim
        written = np.array([[float(row[f"z{i}"]) for i in range(width)] for row in rows])
        np.testing.assert_allclose(result.codes, written, atol=1e-5)
        assert result.probability_high is not None  # the run fitted its classifier
        np.testing.assert_allclose(result.probability_high, [float(row["probability_high"]) for row in rows], atol=1e-5)
        np.testing.assert_allclose(model.classify(tmp_path / "in"), result.probability_high, atol=1e-5)

    def write_damaged_input(self, folder):
        folder = self.write_input(folder)
        path = sorted(folder.glob("*.png"))[0]
        path.write_bytes(path.read_bytes()[:60])
        return path, "not a readable"

    def bad_arrays(self):
        return [(np.zeros((2, 3, 4, 5, 6)), {}, InputError, r"the crops: expected gray crops \[N, H, W\] in \[0, 1\], found shape \(2, 3, 4, 5, 6\)")]


@pytest.fixture(scope="module")
def lch_run(tmp_path_factory):
    run = TestLCHConformance.trained(tmp_path_factory)
    return run.model_dir, run.trained


@pytest.mark.slow
def test_command_line_chain(lch_run, tmp_path):
    model_dir, result = lch_run
    assert "leave-one-cell-line-out ROC-AUC" in result.stdout
    metrics = json.loads((model_dir / "metrics_test.json").read_text())
    assert metrics["cells"] == 8 and metrics["cell_lines"] == 4  # 2 of 12 per line
    assert 0.0 <= metrics["loco/roc_auc"] <= 1.0 and metrics["reconstruction/mse"] > 0
    calibration = json.loads((model_dir / "calibration.json").read_text())
    assert len(calibration["classifier"]["weights"]) == 8 and calibration["classifier_cells"] == 40
    result = run_cli("biomodels.evaluate", "--task=lch", f"--model_dir={model_dir}", "--split=val")
    assert result.returncode == 0, result.stderr
    assert "pdx01" in result.stdout and (model_dir / "metrics_val.json").exists()

    crops = write_tiny_folder(tmp_path / "new", seed=5)
    out = tmp_path / "insilico"  # writes embeddings.csv too, as --mode=embed does
    result = run_cli("biomodels.predict", "--task=lch", f"--model={model_dir / 'export'}", f"--input={crops}",
                     f"--output={out}", "--mode=insilico", "--steps=5")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(out / "embeddings.csv")))
    assert len(rows) == 12 and rows[0]["cell_type"].startswith("pdx")
    assert list(rows[0])[:2] == ["file", "date"] and "z7" in rows[0] and "z8" not in rows[0]
    assert all(0.0 <= float(row["probability_high"]) <= 1.0 for row in rows)
    summary = json.loads((out / "insilico.json").read_text())
    assert len(summary["cells"]) == 4 and len(summary["columns"]) == 6
    for cell in summary["cells"]:  # moving along the classifier's direction raises P(high) step by step
        steps = cell["probability_high_per_step"]
        assert len(steps) == 5 and all(a <= b for a, b in zip(steps, steps[1:]))
    from PIL import Image

    with Image.open(out / "insilico_montage.png") as montage:
        assert montage.size == (6 * 128 + 5 * 2, 4 * 128 + 3 * 2)
    from biomodels.tasks.lch.outputs import GIF_FRAME_MS

    with Image.open(out / summary["cells"][0]["gif"]) as gif:
        # 5 steps there, 3 back: 8 frames' time (Pillow merges identical neighbours, adding their durations)
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
        assert sum(durations) == 8 * GIF_FRAME_MS and gif.info.get("loop") == 0
    names = [row["file"] for row in rows[:2]]
    out = tmp_path / "between"
    result = run_cli("biomodels.predict", "--task=lch", f"--model={model_dir}", f"--input={crops}",
                     f"--output={out}", "--mode=interpolate", f"--cells={','.join(names)}", "--steps=4")
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("interpolate_*.gif"))) == 1 and len(list(out.glob("interpolate_*.png"))) == 1


@pytest.mark.slow
def test_bad_input_gives_one_line(lch_run, tmp_path, lch_task):
    model_dir, _ = lch_run
    crops = write_tiny_folder(tmp_path / "crops", seed=2)
    (crops / "170101_pdx01_s1_t000_p1_f000.png").write_bytes(b"not a png")
    result = run_cli("biomodels.predict", "--task=lch", f"--model={model_dir}", f"--input={crops}", f"--output={tmp_path / 'out'}")
    assert_one_line_error(result, "170101_pdx01_s1_t000_p1_f000.png", "not a readable image")
    assert not (tmp_path / "out" / "embeddings.csv").exists()
    from biomodels.tasks.base import option_values

    (crops / "170101_pdx01_s1_t000_p1_f000.png").unlink()
    predictor = type("Predictor", (), {"config": {}, "calibration": {}, "source": str(model_dir)})()
    with pytest.raises(ConfigError, match="needs --cells"):
        lch_task.predict_files(predictor, str(crops), str(tmp_path / "out"),
                               option_values(lch_task.predict_options, {"mode": "interpolate"}))
    with pytest.raises(InputError, match="nowhere.png: is not one of the crops"):
        lch_task.predict_files(predictor, str(crops), str(tmp_path / "out"),
                               option_values(lch_task.predict_options, {"mode": "insilico", "cells": ["nowhere.png"]}))


def test_predict_reads_and_sends_crops_a_batch_at_a_time(lch_run, tmp_path, lch_task, monkeypatch):
    """embed over a folder with batch_size 5: the crops are read (and sent) at most 5 at a
    time, so memory does not grow with their number, and embeddings.csv holds the codes
    and probabilities of all of them at once (biomodels.load(run).predict)."""
    import biomodels
    from biomodels.predictors import RunPredictor
    from biomodels.tasks.base import option_values
    from biomodels.tasks.lch import data

    model_dir, _ = lch_run
    crops = write_tiny_folder(tmp_path / "crops", seed=3)
    read = []
    real = data.load_crops
    monkeypatch.setattr(data, "load_crops", lambda paths, *args, **kwargs: read.append(len(paths)) or real(paths, *args,
                                                                                                            **kwargs))
    out = tmp_path / "out"
    out.mkdir()
    lch_task.predict_files(RunPredictor(lch_task, str(model_dir)), str(crops), str(out),
                           option_values(lch_task.predict_options, {"batch_size": 5}))
    assert sum(read) == 12 and max(read) <= 5
    rows = list(csv.DictReader(open(out / "embeddings.csv")))
    expected = biomodels.load(model_dir).predict(crops)
    width = expected.codes.shape[1]
    np.testing.assert_allclose([[float(row[f"z{i}"]) for i in range(width)] for row in rows], expected.codes, atol=1e-5)
    np.testing.assert_allclose([float(row["probability_high"]) for row in rows], expected.probability_high, atol=1e-5)


@pytest.mark.slow
def test_export_signatures_in_a_fresh_process(lch_run, tmp_path, lch_task, tiny_lch_config):
    import keras

    import biomodels.models  # noqa: F401  registers the classes in best.keras

    from biomodels.ops.latent_classifier import LinearClassifier

    model_dir, _ = lch_run
    export = model_dir / "export"
    model = keras.saving.load_model(str(model_dir / "best.keras"), safe_mode=True)
    crops = np.random.default_rng(3).uniform(0, 1, (3, 256, 256, 1)).astype(np.float32)
    codes = np.asarray(model.encoder(np.asarray(lch_task.bind(tiny_lch_config).preprocess(crops)), training=False))
    served, dtypes = call_without_biomodels(tmp_path, export, {
        "serving_default": {"images": crops}, "encode": {"images": crops}, "decode": {"latent": codes},
        "classify": {"images": crops}})
    assert dtypes == {"serving_default": {"latent": "float32"}, "encode": {"latent": "float32"},
                      "decode": {"images": "float32"}, "classify": {"probability_high": "float32"}}
    assert served["serving_default"]["latent"].shape == (3, 8)
    np.testing.assert_allclose(served["serving_default"]["latent"], codes, atol=1e-4)
    np.testing.assert_allclose(served["encode"]["latent"], served["serving_default"]["latent"], atol=1e-6)
    assert served["decode"]["images"].shape == (3, 32, 32, 1)
    np.testing.assert_allclose(served["decode"]["images"], np.asarray(model.decoder(codes, training=False)), atol=1e-4)
    classifier = LinearClassifier.from_dict(json.loads((model_dir / "calibration.json").read_text())["classifier"])
    np.testing.assert_allclose(served["classify"]["probability_high"], classifier.probabilities(codes), atol=1e-4)


def test_choose_l2_scores_every_penalty_without_the_judged_rows():
    from biomodels.ops.latent_classifier import L2_GRID, choose_l2

    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(6), 20)
    labels = (groups % 2).astype(int)
    codes = rng.normal(size=(120, 4)) + labels[:, None] * [3.0, 0, 0, 0]
    best, scores = choose_l2(codes, labels, groups)
    assert set(scores) == set(L2_GRID) and scores[best] == max(scores.values()) and scores[best] > 0.9
    with pytest.raises(ValueError, match="no group"):
        choose_l2(codes[:40], np.repeat([0, 1], 20), np.repeat([0, 1], 20))


@pytest.mark.slow
def test_serving_layout_warmup_and_bioimageio(tmp_path, lch_task, tiny_lch_config):
    import zipfile

    import tensorflow as tf
    from bioimageio.spec import load_description
    from tensorflow_serving.apis import prediction_log_pb2

    from biomodels.export import serving
    from biomodels.export.bioimageio import write_package

    import keras

    calibration = {"classifier": {"mean": [0.0] * 8, "scale": [1.0] * 8, "weights": [0.5] * 8, "bias": 0.1}}
    model = tiny_model()
    # as training would: the latent BN's statistics those of the codes, so codes are about N(0, 1)
    # (bioimage.io's tolerance is relative to the test output's size)
    before_bn = keras.Model(model.encoder.input, model.encoder.get_layer("to_latent").output)
    values = np.asarray(before_bn(random_crops(64)))
    batch_norm = model.encoder.get_layer("latent_bn")
    batch_norm.moving_mean.assign(values.mean(axis=0))
    batch_norm.moving_variance.assign(values.var(axis=0))
    path = serving.export_version(lch_task, model, tiny_lch_config, str(tmp_path / "serving"), warmup=3,
                                  metadata={"calibration": calibration})
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "encode", "decode", "classify"}
    records = list(tf.data.TFRecordDataset(os.path.join(path, serving.WARMUP_FILE)).as_numpy_iterator())
    replayed = set()
    for record in records:
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        replayed.add(request.model_spec.signature_name)
        assert all(np.isfinite(value.numpy()).all() for value in outputs.values())
    assert replayed == {"serving_default", "decode"}
    package = write_package(lch_task, path, tiny_lch_config, str(tmp_path / "1.bioimageio.zip"))
    with zipfile.ZipFile(package) as archive:
        assert {"test_input_images.npy", "test_output_latent.npy"} <= set(archive.namelist())
    summary = load_description(package, perform_io_checks=True).validation_summary
    errors = [f"{error.loc}: {error.msg}" for detail in summary.details for error in detail.errors]
    assert summary.status in ("passed", "valid-format"), errors


@pytest.mark.slow
def test_package_of_a_trained_run_passes_bioimageios_own_test(lch_run, tmp_path):
    model_dir, _ = lch_run
    assert_bioimageio_core_passes(export_package("lch", model_dir, tmp_path), seeds=(3,))


def test_training_batches_hold_the_stretched_crops_alone_and_evaluation_the_targets(lch_task, tiny_lch_config):
    """lch's model_io runs once a batch (model_io_on_batches) and its training batches
    hold the network's crops alone (the autoencoder reads no targets); evaluation batches
    are model_io of the same examples batched, the baseline's statistics included."""
    from biomodels import prepare
    from biomodels.pipelines import dataset as dataset_lib
    from biomodels.pipelines import manifest as manifest_lib

    manifest = manifest_lib.read(prepare.synthetic_dataset(lch_task, tiny_lch_config), lch_task)
    bound = lch_task.bind(tiny_lch_config, manifest=manifest)
    [training] = dataset_lib.training_dataset(bound, 0, steps_per_epoch=1).take(1)
    assert isinstance(training, tuple) and len(training) == 1
    assert training[0].shape == (8, 32, 32, 1) and 0.0 <= float(np.min(training[0])) <= float(np.max(training[0])) <= 1.0
    images, targets = next(iter(dataset_lib.evaluation_dataset(bound, "val")))
    raw = next(iter(dataset_lib.examples(manifest, "val").batch(8)))
    expected_images, expected_targets = bound.model_io(raw)
    np.testing.assert_array_equal(images, expected_images)
    assert sorted(targets) == ["cell_line", "efficiency", "image_statistics"]
    assert targets["image_statistics"].shape == (8, 5)
    np.testing.assert_array_equal(targets["image_statistics"], expected_targets["image_statistics"])
    crop = np.asarray(raw["image"][0], np.float64) / 255  # image_size 32: stored at the model's size
    np.testing.assert_allclose(targets["image_statistics"][0], [crop.mean(), crop.std(), *np.percentile(crop, [5, 50, 95])],
                               atol=1e-5)


def test_training_batches_from_memory_are_the_crops_turned_and_mirrored(lch_task, tiny_lch_config):
    """lch holds its training split in memory as the network's crops (training_arrays)
    and gathers each pass's batches from them: every crop of a pass is a training crop
    once, as model_io makes it, turned by quarter turns and mirrored as `augment` does;
    every turn and both mirrorings appear, as they do when `augment` turns a streamed crop;
    a resumed run sees the same batches, and a split whose float32 crops exceed the cache
    budget (four times its 8-bit shards) is streamed."""
    import tensorflow as tf

    from biomodels import prepare
    from biomodels.pipelines import dataset as dataset_lib
    from biomodels.pipelines import manifest as manifest_lib

    manifest = manifest_lib.read(prepare.synthetic_dataset(lch_task, tiny_lch_config), lch_task)
    bound = lch_task.bind(tiny_lch_config, manifest=manifest)
    raw = next(iter(dataset_lib.examples(manifest, "train").batch(10_000)))
    crops = bound.training_arrays(dataset_lib.examples(manifest, "train"))
    np.testing.assert_array_equal(crops, bound.model_io(raw)[0])

    def variants(crop):  # the eight turns and mirrors, as augment makes them of one crop
        turns = [tf.image.rot90(crop, k) for k in range(4)]
        return [np.asarray(image) for image in turns + [tf.image.flip_left_right(image) for image in turns]]

    batches = list(bound.epoch_batches(crops, tf.constant([3, 4], tf.int64), 8))
    assert len(batches) == len(crops) // 8 and all(len(batch) == 1 and batch[0].shape == (8, 32, 32, 1)
                                                    for batch in batches)
    seen, kinds = [], set()
    for image in np.concatenate([batch[0] for batch in batches]):
        matches = [(row, kind) for row in range(len(crops)) for kind, variant in enumerate(variants(crops[row]))
                   if np.array_equal(variant, image)]
        assert len(matches) == 1, "each crop of a batch is one turn or mirror of one training crop"
        seen.append(matches[0][0])
        kinds.add(matches[0][1])
    assert len(set(seen)) == len(seen) == len(batches) * 8
    assert {kind % 4 for kind in kinds} == {0, 1, 2, 3} and {kind // 4 for kind in kinds} == {0, 1}  # turns, mirrors
    raw_crop = raw["image"][0]  # a streamed crop: augment turns and mirrors it the same way
    streamed_kinds = {[np.array_equal(variant, bound.augment({"image": raw_crop}, tf.constant([seed, 1], tf.int64))["image"])
                       for variant in variants(raw_crop)].index(True) for seed in range(24)}
    assert {kind % 4 for kind in streamed_kinds} == {0, 1, 2, 3} and {kind // 4 for kind in streamed_kinds} == {0, 1}

    whole = list(dataset_lib.training_dataset(bound, 7, steps_per_epoch=3).take(6))
    resumed = list(dataset_lib.training_dataset(bound, 7, steps_per_epoch=3, first_epoch=1).take(3))
    for ours, theirs in zip(whole[3:], resumed):
        np.testing.assert_array_equal(ours[0], theirs[0])
    assert not np.array_equal(whole[0][0], whole[3][0])
    shard_bytes = dataset_lib.split_bytes(manifest, "train")
    assert dataset_lib._training_arrays(bound, "train", 4 * shard_bytes, 8) is not None
    assert dataset_lib._training_arrays(bound, "train", 4 * shard_bytes - 1, 8) is None
    [streamed] = dataset_lib.training_dataset(bound, 7, steps_per_epoch=3, cache_bytes=shard_bytes).take(1)
    assert len(streamed) == 1 and streamed[0].shape == whole[0][0].shape
    # fewer crops than a batch: no pass of the arrays holds one, so the split is streamed
    # (repeating crops to fill it) rather than searched for a batch forever
    [larger] = dataset_lib.training_dataset(bound, 7, steps_per_epoch=1, batch_size=len(crops) + 1).take(1)
    assert larger[0].shape == (len(crops) + 1, 32, 32, 1)
