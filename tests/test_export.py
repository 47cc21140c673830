"""Exports run in a fresh TensorFlow process that cannot import biomodels, and give
the Keras model's probabilities."""

import json
import subprocess
import sys

import numpy as np
import pytest

from biomodels.export.savedmodel import export_saved_model, load_predictor
from biomodels.errors import InputError
from biomodels.models import CryoETUNet

FRESH_PROCESS = r"""
import importlib.abc, sys, json
class NoBiomodels(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "biomodels" or name.startswith("biomodels."):
            raise ImportError("biomodels is hidden from this process")
sys.meta_path.insert(0, NoBiomodels())
try:
    import biomodels
    raise SystemExit("biomodels was importable")
except ImportError:
    pass
import numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serving_default"]
out = serve(images=tf.constant(np.load(sys.argv[2])))
np.save(sys.argv[3], out["probabilities"].numpy())
print(json.dumps({k: v.dtype.name for k, v in out.items()}))
"""


def test_export_matches_keras_model_in_a_fresh_process(tmp_path, cryoet_task, tiny_cryoet_config):
    model = CryoETUNet(base_filters=4, depth=3)
    images = np.random.default_rng(0).normal(size=(2, 36, 44, 1)).astype(np.float32)
    path = export_saved_model(cryoet_task, model, tiny_cryoet_config, str(tmp_path / "export" / "1"))
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS)
    result = subprocess.run([sys.executable, str(script), path, str(tmp_path / "images.npy"), str(tmp_path / "out.npy")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"probabilities": "float32", "labels": "int32"}
    expected = cryoet_task.serving_functions(model, tiny_cryoet_config)["serving_default"](images=images)["probabilities"]
    direct = model(cryoet_task.preprocess(images[:, :36, :44]), training=False)  # 36x44 are multiples of 4
    served = np.load(tmp_path / "out.npy")
    assert np.abs(served - np.asarray(expected)).max() < 1e-4
    assert np.abs(served - np.asarray(direct)).max() < 1e-4
    info = json.loads((tmp_path / "export" / "1" / "export.json").read_text())
    assert info["signatures"]["serving_default"]["inputs"]["images"]["shape"] == [None, None, None, 1]


def test_export_refuses_to_overwrite(tmp_path, cryoet_task, tiny_cryoet_config):
    (tmp_path / "taken").mkdir()
    with pytest.raises(InputError, match="already exists"):
        export_saved_model(cryoet_task, CryoETUNet(base_filters=4, depth=3), tiny_cryoet_config, str(tmp_path / "taken"))


def test_load_predictor_rejects_a_plain_folder(tmp_path, cryoet_task):
    with pytest.raises(InputError, match="config.json: not found"):
        load_predictor(cryoet_task, str(tmp_path))
