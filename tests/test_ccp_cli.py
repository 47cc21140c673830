"""ccp through the command lines on a tiny synthetic data set: prepare, train, evaluate,
export and the triage list; exports of both models in a process without biomodels;
bad input as one line and exit status 2."""

import csv
import json

import numpy as np
import pytest

from biomodels import config as config_lib
from biomodels.export.savedmodel import export_saved_model
from biomodels.pipelines import track_csv
from biomodels.pipelines.synthetic import ccp as synthetic
from conformance import StudyConformance, predict_files
from conftest import assert_one_line_error, run_cli, run_without_biomodels
from test_ccp import TINY_CCP

SETS = [arg for item in TINY_CCP for arg in ("--set", item)]


class TestCCPConformance(StudyConformance):
    task_name = "ccp"
    settings = TINY_CCP
    prepare_flags = ("--num_examples=3",)
    train_flags = ("--epochs=2", "--steps_per_epoch=4")
    # one output, `probability`: TF Serving's REST answer leaves its name out
    served_options = {"threshold": 0.5}
    served_files = ["triage.csv", "cells.csv", "triage_examples.png", "triage_summary.json"]

    def write_input(self, folder):
        synthetic.write_dataset(str(folder), cells=2, seed=7, tracks_per_cell=40)
        return folder

    def assert_python_equals_files(self, run, path, files, tmp_path):
        import biomodels
        from biomodels.tasks.ccp import data
        from tf_serving_standin import TFServingStandIn

        predict_files("ccp", run, path, files, threshold=0.5)
        with open(files / "triage.csv") as handle:
            by_track = {(row["cell"], row["track"]): float(row["probability"]) for row in csv.DictReader(handle)}
        model = biomodels.load(run)
        result = model.predict(path, threshold=0.5)
        tracks = data.gather_tracks(str(path), data.find_sources(str(path)), "traces")[0]
        assert len(tracks) == len(by_track)
        np.testing.assert_allclose(result.probability, [by_track[(track.cell, track.track_id)] for track in tracks],
                                   atol=1e-5)
        np.testing.assert_array_equal(result.review, result.probability >= 0.5)
        # the metadata in either spelling protobuf's JSON mapping allows (tensor_shape, tensorShape)
        for names in ("proto", "json"):
            with TFServingStandIn({"ccp": {1: run / "export"}}, metadata_names=names) as server:
                served = biomodels.load(f"{server.rest_url}/v1/models/ccp").predict(path, threshold=0.5)
            np.testing.assert_allclose(served.probability, result.probability, atol=1e-5, err_msg=names)

    def write_damaged_input(self, folder):
        folder.mkdir()
        (folder / "broken.csv").write_text("cell,track,lifetime\nc,1,3\n")
        return folder / "broken.csv", "has neither trace columns"

    def bad_arrays(self):
        from biomodels.errors import InputError

        return [([np.ones((5, 2)), np.ones((5, 3))], {"threshold": 0.5}, InputError, "trace 1: expected")]


@pytest.fixture(scope="module")
def ccp_run(tmp_path_factory):
    run = TestCCPConformance.trained(tmp_path_factory)
    assert "Left out:" in run.prepared.stdout and "shorter than 2 frames" in run.prepared.stdout
    raw = run.root / "raw"
    if not raw.exists():
        synthetic.write_dataset(str(raw), cells=2, seed=7, tracks_per_cell=40)
    return run.root, run.data_dir, run.model_dir, raw, run.trained


@pytest.mark.slow
def test_train_reports_against_the_majority_baseline(ccp_run):
    _, _, model_dir, _, result = ccp_run
    assert "majority baseline" in result.stdout and "balanced accuracy" in result.stdout
    assert "model inputs" in result.stdout and "clathrin traces" in result.stdout
    metrics = json.loads((model_dir / "metrics_test.json").read_text())
    assert metrics["baseline/balanced_accuracy"] == 0.5 and metrics["baseline/roc_auc"] == 0.5
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and 0.0 <= metrics["triage/recall"] <= 1.0
    calibration = json.loads((model_dir / "calibration.json").read_text())
    positives = calibration["validation_positive_probabilities"]
    assert positives == sorted(positives) and len(positives) > 0
    export_info = json.loads((model_dir / "export" / "export.json").read_text())
    assert export_info["calibration"] == calibration
    assert export_info["signatures"]["serving_default"]["inputs"] == {
        "traces": {"dtype": "float32", "shape": [None, None, 1]}, "lengths": {"dtype": "int32", "shape": [None]}}


@pytest.mark.slow
def test_evaluate_export_and_triage(ccp_run, tmp_path):
    _, _, model_dir, raw, _ = ccp_run
    result = run_cli("biomodels.evaluate", "--task=ccp", f"--model_dir={model_dir}", "--split=val")
    assert result.returncode == 0, result.stderr
    assert "share of tracks to review" in result.stdout

    export_dir = tmp_path / "serving"
    result = run_cli("biomodels.export", "--task=ccp", f"--model_dir={model_dir}", f"--export_dir={export_dir}", "--warmup=2")
    assert result.returncode == 0, result.stderr
    batching = (export_dir / "ccp" / "1" / "assets.extra" / "batching_params.pbtxt").read_text()
    assert "pad_variable_length_inputs: true" in batching
    _replay_warmup_records(export_dir / "ccp" / "1")

    outputs = {}
    for name, model in (("export", export_dir / "ccp" / "1"), ("run", model_dir)):
        out = tmp_path / f"triage_{name}"
        result = run_cli("biomodels.predict", "--task=ccp", f"--model={model}", f"--input={raw}", f"--output={out}",
                         "--target_recall=0.9")
        assert result.returncode == 0, result.stderr
        assert {p.name for p in out.iterdir()} == {"triage.csv", "cells.csv", "triage_examples.png", "triage_summary.json"}
        with open(out / "triage.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        outputs[name] = rows
        probabilities = [float(row["probability"]) for row in rows]
        assert [int(row["rank"]) for row in rows] == list(range(1, len(rows) + 1))
        assert probabilities == sorted(probabilities, reverse=True)
        summary = json.loads((out / "triage_summary.json").read_text())
        assert summary["threshold_basis"].startswith("recall 0.9")
        assert summary["left_out"]["shorter than 2 frames"] > 0
        assert summary["tracks"] == len(rows) and {row["cell"] for row in rows} == {"Cell1_1s", "Cell2_1s"}
        flagged = [row for row in rows if row["review"] == "1"]
        assert len(flagged) == summary["flagged_for_review"]
        assert all(float(row["probability"]) >= summary["threshold"] for row in flagged)
        assert {row["label"] for row in rows} <= {"0", "1"}  # the synthetic files carry auxilin p-values
        with open(out / "cells.csv", newline="") as handle:
            cells = list(csv.DictReader(handle))
        assert sum(int(cell["tracks"]) for cell in cells) == len(rows)
        assert sum(int(cell["flagged_for_review"]) for cell in cells) == len(flagged)
    np.testing.assert_allclose([float(r["probability"]) for r in outputs["export"]],
                               [float(r["probability"]) for r in outputs["run"]], atol=1e-5)

    out = tmp_path / "given_threshold"
    result = run_cli("biomodels.predict", "--task=ccp", f"--model={export_dir / 'ccp' / '1'}", f"--input={raw}",
                     f"--output={out}", "--threshold=0.0")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "triage_summary.json").read_text())
    assert summary["threshold_basis"] == "given threshold" and summary["flagged_for_review"] == summary["tracks"]


def _replay_warmup_records(saved_model):
    """The warmup requests parse as PredictionLog and run against the signature."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from biomodels.export.serving import WARMUP_FILE

    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    records = list(tf.data.TFRecordDataset(str(saved_model / WARMUP_FILE)).as_numpy_iterator())
    assert len(records) == 2
    for record in records:
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        assert signature(**inputs)["probability"].shape == inputs["lengths"].shape


@pytest.mark.slow
def test_bad_input(ccp_run, tmp_path):
    _, _, model_dir, _, _ = ccp_run
    broken = tmp_path / "broken.csv"
    broken.write_text("cell,track,lifetime\nc,1,3\n")
    assert_one_line_error(run_cli("biomodels.predict", "--task=ccp", f"--model={model_dir}", f"--input={broken}",
                                  f"--output={tmp_path / 'out'}"), "broken.csv", "has neither trace columns")
    assert not (tmp_path / "out" / "triage.csv").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("biomodels.prepare", "--task=ccp", f"--input={empty}", f"--output_dir={tmp_path / 'p'}"),
                          "empty", "no track files")
    assert_one_line_error(run_cli("biomodels.export", "--task=ccp", f"--model_dir={model_dir}",
                                  f"--export_dir={tmp_path / 'serving'}", "--bioimageio"), "not images")
    assert not (tmp_path / "serving").exists()
    assert_one_line_error(run_cli("biomodels.train", "--task=ccp", "--set", "model=lstm", f"--model_dir={tmp_path / 'r'}",
                                  f"--data_dir={ccp_run[1]}"), "model=lstm")


@pytest.mark.slow
def test_a_file_name_that_is_not_utf8_is_predicted(ccp_run, tmp_path):
    """Linux file names are bytes: one written by another system's encoding (Latin-1
    'Zelle_ä') must not crash predict, and its cell keeps a readable name."""
    import os
    import shutil

    _, _, model_dir, raw, _ = ccp_run
    source = next(path for path in sorted(raw.rglob("*.csv")))
    folder = tmp_path / "odd"
    folder.mkdir()
    shutil.copy(source, os.path.join(os.fsencode(folder), "Zelle_\xe4.csv".encode("latin-1")))
    out = tmp_path / "out"
    result = run_cli("biomodels.predict", "--task=ccp", f"--model={model_dir}", f"--input={folder}", f"--output={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out / "triage.csv", newline="", encoding="utf-8") as handle:
        files = {os.path.basename(row["file"]) for row in csv.DictReader(handle)}
    assert files == {"Zelle_\\xe4.csv"}, files
    json.loads((out / "triage_summary.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", ["traces", "features"])
def test_exports_match_keras_in_a_fresh_process(tmp_path, kind):
    from biomodels import tasks
    from biomodels.models import TraceFeatureNet, TraceNet

    task = tasks.get("ccp")
    config = config_lib.resolve(task, "quick", [*TINY_CCP, f"model={kind}"])
    rng = np.random.default_rng(0)
    if kind == "traces":
        model = TraceNet([50.0, 1.0], [400.0, 4.0], filters=4, gru_units=4, dense_units=4)
        traces = rng.normal(size=(3, 12, 2)).astype(np.float32) * 20
        traces[1, 5:] = np.nan  # NaN padding, as in lifetimeData.mat
        inputs = {"traces": traces, "lengths": np.array([12, 5, 2], np.int32)}
        direct = model({"traces": np.nan_to_num(traces), "lengths": inputs["lengths"]}, training=False)
    else:
        model = TraceFeatureNet(rng.normal(size=11), rng.random(11) + 0.5)
        inputs = {"features": rng.normal(size=(4, 11)).astype(np.float32)}
        direct = model(inputs, training=False)
    path = export_saved_model(task, model, config, str(tmp_path / "export"))
    served, dtypes = run_without_biomodels(tmp_path, path, inputs)
    assert dtypes == {"probability": "float32"}
    assert served["probability"].shape == (len(next(iter(inputs.values()))),)
    np.testing.assert_allclose(served["probability"], np.asarray(direct).ravel(), atol=1e-5)


def test_warmup_inputs_fit_the_signature(tmp_path):
    from biomodels import tasks

    task = tasks.get("ccp")
    config = config_lib.resolve(task, "quick", TINY_CCP)
    for name, inputs in task.bind(config).warmup_inputs():
        assert name == "serving_default" and set(inputs) == {"traces", "lengths"}
        assert inputs["traces"].dtype == np.float32 and inputs["lengths"].dtype == np.int32
        assert len(inputs["lengths"]) == len(inputs["traces"])


def test_triage_reads_a_features_only_table_with_the_features_model(tmp_path):
    """A CSV of the study's feature columns ranks through the features model."""
    from biomodels import tasks
    from biomodels.predictors import SavedModelPredictor
    from biomodels.models import TraceFeatureNet
    from biomodels.ops.track_features import FEATURE_NAMES
    from biomodels.tasks.base import option_values

    task = tasks.get("ccp")
    config = config_lib.resolve(task, "quick", [*TINY_CCP, "model=features"])
    rng = np.random.default_rng(0)
    model = TraceFeatureNet(np.zeros(11), np.ones(11))
    path = export_saved_model(task, model, config, str(tmp_path / "export"),
                              {"calibration": {"validation_positive_probabilities": [0.2, 0.4, 0.6]}})
    table = tmp_path / "features.csv"
    rows = [",".join(["cell", "track", *FEATURE_NAMES])]
    rows += [",".join([f"cell{i % 2}", str(i), *map(str, rng.normal(size=11))]) for i in range(10)]
    table.write_text("\n".join(rows) + "\n")
    written = task.predict_files(SavedModelPredictor(path), str(table), str(tmp_path / "out"),
                                 option_values(task.predict_options, {"target_recall": 1.0}))
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == ["cells.csv", "triage.csv", "triage_summary.json"]
    summary = json.loads((tmp_path / "out" / "triage_summary.json").read_text())
    assert summary["model_kind"] == "features" and summary["threshold"] == 0.2 and summary["tracks"] == 10
    tracks, _ = track_csv.read_track_csv(str(table))
    assert len(tracks) == 10
