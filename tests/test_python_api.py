"""biomodels from Python: `biomodels.train` trains a tiny run of every study in this
process, `biomodels.load(...).predict` answers what the predict command writes to files
(for arrays and for paths, from a run, its export and TF Serving), bad input is one
clear error, and every example in the Python entry's docstrings runs (doctest)."""

import csv
import doctest
import importlib
import json
import os

import numpy as np
import pytest
import tifffile

import biomodels
from biomodels.errors import ConfigError, InputError
from conftest import assert_same_json

#: tiny settings of each study, as keyword arguments of biomodels.train
TINY = {
    "cryoet": dict(base_filters=4, depth=3, tile_size=32, synthetic_shape=(6, 64, 64), batch_size=4,
                   synthetic_tomograms=3),
    "cellular": dict(nbase=(4, 8, 16, 32), crop_size=32, batch_size=2, synthetic_images=6, synthetic_shape=(64, 64)),
    "deepis": dict(widths=(4, 4, 8, 8, 8), gcn_kernels=(1, 3, 3, 3, 3), crop=(16, 32, 32), synthetic_shape=(16, 32, 32),
                   synthetic_volumes=4, batch_size=1),
    "lch": dict(image_size=32, filters=(8, 16, 32), latent_dim=8, discriminator_units=(16, 16, 8), batch_size=8,
                synthetic_cells=48, synthetic_cell_lines=4),
    "ccp": dict(synthetic_cells=3, synthetic_tracks_per_cell=80, batch_size=8, filters=4, gru_units=4, dense_units=4,
                conv_layers=1),
}
#: the modules whose docstring examples make the Python entry's documentation
DOCUMENTED = ["biomodels.study", "biomodels.study_model", "biomodels.tasks.base", "biomodels.tasks.cryoet.inference",
              "biomodels.tasks.cellular.inference", "biomodels.tasks.deepis.inference",
              "biomodels.tasks.lch.inference", "biomodels.tasks.ccp.inference"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{task: run directory} of one tiny run per study, trained by biomodels.train."""
    root = tmp_path_factory.mktemp("api")
    os.environ["BIOMODELS_CACHE"] = str(root / "cache")  # the autouse fixture's is per test
    trained = {}
    for name, settings in TINY.items():
        run = biomodels.train(name, model_dir=str(root / f"{name}_run"), epochs=1, steps_per_epoch=2, **settings)
        assert run.model_dir == str(root / f"{name}_run") and run.test_metrics
        trained[name] = root / f"{name}_run"
    return trained


def predict_files(name, model, input_path, output_dir, **options):
    """What `python -m biomodels.predict --task=NAME --model=MODEL` writes, run in this process."""
    from biomodels import tasks
    from biomodels.predictors import open_predictor
    from biomodels.tasks.base import option_values

    task = tasks.get(name)
    os.makedirs(output_dir, exist_ok=True)
    task.predict_files(open_predictor(task, str(model)), str(input_path), str(output_dir),
                       option_values(task.predict_options, options))
    return output_dir


@pytest.mark.parametrize("module", DOCUMENTED)
def test_docstring_examples_run(module, runs, tmp_path):
    module = importlib.import_module(module)
    globs = {**vars(module), "biomodels": biomodels, "np": np, "tmp": tmp_path,
             **{f"{name}_run": path for name, path in runs.items()}}
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    examples = 0
    for test in finder.find(module, globs=globs):
        examples += len(test.examples)
        runner.run(test)
    assert examples, f"{module} has no examples"
    assert runner.failures == 0, f"{runner.failures} example(s) of {module} failed (see the output above)"


def test_the_public_entry_is_documented_with_args_returns_and_an_example():
    from biomodels import study

    for function in (study.load, study.train):
        for part in ("Args:", "Returns:", "Example:", ">>>"):
            assert part in function.__doc__, (function.__name__, part)
    assert biomodels.load is study.load and callable(biomodels.train)


def test_cryoet_predict_equals_the_files_of_predict(runs, tmp_path):
    from biomodels.pipelines import readers
    from biomodels.pipelines.synthetic import cryoet
    from biomodels.tasks.cryoet.config import CLASS_NAMES, FEATURE_CLASSES

    [name] = cryoet.write_dataset(str(tmp_path / "in"), count=1, seed=5, shape=(3, 64, 64))
    path = str(tmp_path / "in" / f"{name}.mrc")
    out = predict_files("cryoet", runs["cryoet"], path, tmp_path / "out", probabilities=True)
    stem = name
    for model in (biomodels.load(runs["cryoet"]), biomodels.load(runs["cryoet"] / "export")):
        result = model.predict(path)
        np.testing.assert_array_equal(result.labels, readers.read_mrc(str(out / f"{stem}_labels.mrc")).data)
        for index in FEATURE_CLASSES:
            written = readers.read_mrc(str(out / f"{stem}_{CLASS_NAMES[index]}.mrc")).data
            np.testing.assert_allclose(result.probabilities[..., index], written, atol=1e-5)
    # an array answers as its file does
    array = biomodels.load(runs["cryoet"]).predict(readers.read_mrc(path).data)
    np.testing.assert_array_equal(array.labels, result.labels)


def test_cellular_predict_equals_the_files_of_predict(runs, tmp_path):
    from biomodels.pipelines.synthetic import cellular

    cellular.write_dataset(str(tmp_path / "in"), 1, seed=3, shape=(64, 64))
    [image] = (tmp_path / "in" / "images").iterdir()
    out = predict_files("cellular", runs["cellular"], image, tmp_path / "out", diameter=20, cellprob_threshold=-2)
    model = biomodels.load(runs["cellular"])
    result = model.predict(image, diameter=20, cellprob_threshold=-2)
    np.testing.assert_array_equal(result.masks, tifffile.imread(out / f"{image.stem}_cp_masks.tif"))
    flows = tifffile.imread(out / f"{image.stem}_cp_flows.tif")
    np.testing.assert_allclose(result.flows, flows[:2], atol=1e-5)
    np.testing.assert_allclose(result.cellprob, flows[2], atol=1e-5)
    assert result.diameter == 20.0 and result.masks.shape == flows.shape[1:]
    # the masks computed in the graph, as a server answers them
    graph = model.predict(image, diameter=20, cellprob_threshold=-2, masks_in="graph")
    assert graph.flows is None and graph.masks.shape == result.masks.shape


def test_deepis_predict_equals_the_files_of_predict(runs, tmp_path):
    from biomodels.pipelines.synthetic import deepis

    [path] = deepis.write_dataset(str(tmp_path / "in"), 1, seed=4, shape=(16, 32, 32))
    os.remove(path.replace(".tif", "_labels.tif"))
    out = predict_files("deepis", runs["deepis"], path, tmp_path / "out")
    result = biomodels.load(runs["deepis"]).predict(path)
    np.testing.assert_allclose(result.distance, tifffile.imread(out / "cells_000_distance.tif"), atol=1e-5)
    np.testing.assert_array_equal(result.labels, tifffile.imread(out / "cells_000_labels.tif"))
    np.testing.assert_array_equal(result.synapse, tifffile.imread(out / "cells_000_synapse.tif").astype(bool))
    report = json.loads((out / "cells_000_report.json").read_text())
    assert report.pop("file") == os.path.abspath(path)
    assert_same_json(report, json.loads(json.dumps(result.report)), "report")
    assert "car_t_volume_um3" in result.report  # the file's voxel size was read


def test_lch_predict_equals_the_files_of_predict(runs, tmp_path):
    from biomodels.pipelines.synthetic import lch

    lch.write_dataset(str(tmp_path / "in"), 6, seed=2, num_lines=2)
    out = predict_files("lch", runs["lch"], tmp_path / "in", tmp_path / "out")
    with open(out / "embeddings.csv") as handle:
        rows = list(csv.DictReader(handle))
    model = biomodels.load(runs["lch"])
    result = model.predict(tmp_path / "in")
    width = model.config.latent_dim
    written = np.array([[float(row[f"z{i}"]) for i in range(width)] for row in rows])
    np.testing.assert_allclose(result.codes, written, atol=1e-5)
    if result.probability_high is not None:
        np.testing.assert_allclose(result.probability_high, [float(row["probability_high"]) for row in rows], atol=1e-5)
        np.testing.assert_allclose(model.classify(tmp_path / "in"), result.probability_high, atol=1e-5)


def test_ccp_predict_equals_the_files_of_predict_locally_and_through_tf_serving(runs, tmp_path):
    from biomodels.pipelines.synthetic import ccp
    from tf_serving_standin import TFServingStandIn

    ccp.write_dataset(str(tmp_path / "in"), 1, seed=6, tracks_per_cell=30)
    out = predict_files("ccp", runs["ccp"], tmp_path / "in", tmp_path / "out", threshold=0.5)
    with open(out / "triage.csv") as handle:
        by_track = {row["track"]: float(row["probability"]) for row in csv.DictReader(handle)}
    model = biomodels.load(runs["ccp"])
    result = model.predict(tmp_path / "in", threshold=0.5)
    from biomodels.tasks.ccp import data

    tracks = data.gather_tracks(str(tmp_path / "in"), data.find_sources(str(tmp_path / "in")), "traces")[0]
    np.testing.assert_allclose(result.probability, [by_track[track.track_id] for track in tracks], atol=1e-5)
    np.testing.assert_array_equal(result.review, result.probability >= 0.5)
    with TFServingStandIn({"ccp": {1: runs["ccp"] / "export"}}) as server:
        served = biomodels.load(f"{server.rest_url}/v1/models/ccp").predict(tmp_path / "in", threshold=0.5)
    np.testing.assert_allclose(served.probability, result.probability, atol=1e-5)


def test_evaluate_and_export_from_python(runs, tmp_path):
    model = biomodels.load(runs["ccp"])
    metrics = model.evaluate()
    assert metrics["tracks"] == model.test_metrics["tracks"] and "ROC-AUC" in str(metrics)
    path = model.export(str(tmp_path / "exports"))
    assert path == str(tmp_path / "exports" / "ccp" / "1") and os.path.isfile(os.path.join(path, "saved_model.pb"))
    exported = biomodels.load(path)
    with pytest.raises(InputError, match="evaluate needs a training run's directory"):
        exported.evaluate()


def test_bad_input_is_one_clear_error(runs, tmp_path):
    model = biomodels.load(runs["cellular"])
    with pytest.raises(ConfigError, match="unknown option 'diamter'; the options are: .*diameter"):
        model.predict(np.zeros((32, 32)), diamter=20)
    with pytest.raises(ConfigError, match="diameter=0.5: must be at least 1"):
        model.predict(np.zeros((32, 32)), diameter=0.5)
    with pytest.raises(InputError, match="expected a 2-D image with at most 4 channels"):
        model.predict(np.zeros((2, 3, 32, 32)))
    with pytest.raises(InputError, match="contains 1 NaN or Inf values"):
        biomodels.load(runs["deepis"]).predict(np.pad(np.full((1, 1, 1), np.nan), ((0, 7), (0, 7), (0, 7))))
    with pytest.raises(InputError, match=r"expected a tomogram \(Z, Y, X\) or a slice"):
        biomodels.load(runs["cryoet"]).predict(np.zeros(5))
    with pytest.raises(InputError, match="trace 1: expected"):
        biomodels.load(runs["ccp"]).predict([np.ones((5, 2)), np.ones((5, 3))], threshold=0.5)
    with pytest.raises(InputError, match="no such file or directory"):
        biomodels.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json: not found"):
        biomodels.load(tmp_path / "empty")
    with pytest.raises(ConfigError, match="names no model; pass task=NAME"):
        biomodels.load("http://127.0.0.1:1")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(InputError, match="notes.txt: is a file: a cryoet model is a run directory"):
        biomodels.load(tmp_path / "notes.txt", task="cryoet")


def test_a_damaged_calibration_names_the_file_and_the_field(runs, tmp_path):
    import shutil

    from conftest import assert_one_line_error, run_cli

    run = tmp_path / "ccp_run"
    shutil.copytree(runs["ccp"], run)
    calibration = json.loads((run / "calibration.json").read_text())
    for damaged, message in (({**calibration, "validation_positive_probabilities": "0.2"},
                              "field validation_positive_probabilities: expected list, found str '0.2'"),
                             ({"validation_negative_probabilities": []},
                              "field validation_positive_probabilities: expected list, found missing"),
                             ([0.1], "is not a JSON object of fitted values")):
        (run / "calibration.json").write_text(json.dumps(damaged))
        with pytest.raises(InputError, match=f"calibration.json: {message}"):
            biomodels.load(run)
    result = run_cli("biomodels.evaluate", "--task=ccp", f"--model_dir={run}")
    assert_one_line_error(result, "calibration.json", "is not a JSON object")
