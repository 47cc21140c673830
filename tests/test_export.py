"""Exports run in a fresh TensorFlow process that cannot import biomodels, and give
the Keras model's probabilities."""

import json

import numpy as np
import pytest

from biomodels.errors import InputError
from biomodels.export.savedmodel import export_saved_model
from biomodels.models import CryoETUNet
from conftest import run_without_biomodels


def test_export_matches_keras_model_in_a_fresh_process(tmp_path, cryoet_task, tiny_cryoet_config):
    model = CryoETUNet(base_filters=4, depth=3)
    images = np.random.default_rng(0).normal(size=(2, 36, 44, 1)).astype(np.float32)
    path = export_saved_model(cryoet_task, model, tiny_cryoet_config, str(tmp_path / "export" / "1"))
    served, dtypes = run_without_biomodels(tmp_path, path, {"images": images})
    assert dtypes == {"probabilities": "float32", "labels": "int32"}
    expected = cryoet_task.bind(tiny_cryoet_config).serving_functions(model)["serving_default"](images=images)["probabilities"]
    direct = model(cryoet_task.preprocess(images[:, :36, :44]), training=False)  # 36x44 are multiples of 4
    assert np.abs(served["probabilities"] - np.asarray(expected)).max() < 1e-4
    assert np.abs(served["probabilities"] - np.asarray(direct)).max() < 1e-4
    info = json.loads((tmp_path / "export" / "1" / "export.json").read_text())
    assert info["signatures"]["serving_default"]["inputs"]["images"]["shape"] == [None, None, None, 1]


def test_export_refuses_to_overwrite(tmp_path, cryoet_task, tiny_cryoet_config):
    (tmp_path / "taken").mkdir()
    with pytest.raises(InputError, match="already exists"):
        export_saved_model(cryoet_task, CryoETUNet(base_filters=4, depth=3), tiny_cryoet_config, str(tmp_path / "taken"))


def test_open_predictor_rejects_a_plain_folder(tmp_path, cryoet_task):
    from biomodels.predictors import open_predictor

    with pytest.raises(InputError, match="config.json: not found"):
        open_predictor(cryoet_task, str(tmp_path))
