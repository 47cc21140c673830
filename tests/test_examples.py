"""The examples run as a user would run them."""

import os
import subprocess
import sys

import pytest

from biomodels.pipelines import readers

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.mark.slow
def test_use_in_keras_example():
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, "use_in_keras.py"), "--steps=2", "--size=16"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained 2 steps" in result.stdout and "saved and reloaded" in result.stdout


@pytest.mark.slow
def test_train_on_your_data_example(tmp_path):
    env = dict(os.environ, EPOCHS="1",
               BIOMODELS_SETTINGS="--set depth=3 --set base_filters=4 --set tile_size=64 --set steps_per_epoch=2")
    result = subprocess.run(["bash", os.path.join(EXAMPLES, "train_on_your_data.sh"), "", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for index in range(3):
        labels = readers.read_mrc(str(tmp_path / "predictions" / f"synthetic_tomogram_{index:03d}_labels.mrc"))
        assert labels.data.shape == (8, 128, 128)
