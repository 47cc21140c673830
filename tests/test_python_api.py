"""biomodels from Python: the entry's docstring examples run (doctest; one trains a
run with `biomodels.train`), `.evaluate` and `.export` from Python, and loading what is
not a model is one clear error. Each study's `.predict` against predict's files, its
inference examples and its bad arrays are checked by the conformance harness
(tests/conformance.py) in the study's own test module."""

import json
import os

import pytest

import biomodels
import test_ccp_cli
import test_cli
from biomodels.errors import ConfigError, InputError
from conformance import run_docstring_examples

#: the modules whose docstring examples make the Python entry's documentation (each
#: task's inference module runs its own in the harness)
DOCUMENTED = ["biomodels.study", "biomodels.study_model", "biomodels.tasks.base"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{task: run directory} of the tiny cryoet and ccp runs the harness trains."""
    return {"cryoet": test_cli.TestCryoETConformance.trained(tmp_path_factory).model_dir,
            "ccp": test_ccp_cli.TestCCPConformance.trained(tmp_path_factory).model_dir}


@pytest.mark.parametrize("module", DOCUMENTED)
def test_docstring_examples_run(module, runs, tmp_path):
    import importlib

    import numpy as np

    module = importlib.import_module(module)
    globs = {**vars(module), "biomodels": biomodels, "np": np, "tmp": tmp_path,
             **{f"{name}_run": path for name, path in runs.items()}}
    assert run_docstring_examples(module, globs), f"{module.__name__} has no examples"


def test_the_public_entry_is_documented_with_args_returns_and_an_example():
    from biomodels import study

    for function in (study.load, study.train):
        for part in ("Args:", "Returns:", "Example:", ">>>"):
            assert part in function.__doc__, (function.__name__, part)
    assert biomodels.load is study.load and callable(biomodels.train)


def test_evaluate_and_export_from_python(runs, tmp_path):
    model = biomodels.load(runs["ccp"])
    metrics = model.evaluate()
    assert metrics["tracks"] == model.test_metrics["tracks"] and "ROC-AUC" in str(metrics)
    path = model.export(str(tmp_path / "exports"))
    assert path == str(tmp_path / "exports" / "ccp" / "1") and os.path.isfile(os.path.join(path, "saved_model.pb"))
    exported = biomodels.load(path)
    with pytest.raises(InputError, match="evaluate needs a training run's directory"):
        exported.evaluate()


def test_what_is_not_a_model_is_one_clear_error(tmp_path):
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
