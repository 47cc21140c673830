"""The TF Serving layout: versioned exports, warmup requests a server can replay,
models.config and batching.config, and what saved_model_cli shows."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from biomodels.errors import InputError
from biomodels.export import serving
from biomodels.models import CryoETUNet
from conftest import assert_bioimageio_core_passes


@pytest.fixture
def exported(tmp_path, cryoet_task, tiny_cryoet_config):
    model = CryoETUNet(base_filters=4, depth=3)
    export_dir = tmp_path / "serving"
    path = serving.export_version(cryoet_task, model, tiny_cryoet_config, str(export_dir), warmup=3)
    return export_dir, path, model


def test_versions_and_server_configs(exported, cryoet_task, tiny_cryoet_config):
    export_dir, path, model = exported
    assert path == str(export_dir / "cryoet" / "1")
    second = serving.export_version(cryoet_task, model, tiny_cryoet_config, str(export_dir), warmup=0)
    assert second == str(export_dir / "cryoet" / "2") and serving.versions(str(export_dir / "cryoet")) == [1, 2]
    assert not [name for name in os.listdir(export_dir / "cryoet") if name.startswith(".")]

    config = text_format.Parse((export_dir / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    [entry] = config.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == ("cryoet", "/models/cryoet", "tensorflow")
    batching = dict(line.split(" { value: ") for line in (export_dir / "batching.config").read_text().splitlines())
    assert set(batching) == {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"}
    assert all(value.endswith(" }") and int(value[:-2]) > 0 for value in batching.values())
    per_model = (export_dir / "cryoet" / "1" / serving.BATCHING_PARAMS_FILE).read_text()
    assert "max_batch_size { value: 4 }" in per_model


def test_existing_version_needs_overwrite(exported, cryoet_task, tiny_cryoet_config):
    export_dir, path, model = exported
    with pytest.raises(InputError, match="this version exists"):
        serving.export_version(cryoet_task, model, tiny_cryoet_config, str(export_dir), version=1)
    serving.export_version(cryoet_task, model, tiny_cryoet_config, str(export_dir), version=1, overwrite=True, warmup=0)
    assert not os.path.exists(os.path.join(path, serving.WARMUP_FILE))  # replaced by the export without warmup


def test_warmup_records_replay_against_the_signatures(exported):
    _, path, _ = exported
    loaded = tf.saved_model.load(path)
    records = list(tf.data.TFRecordDataset(os.path.join(path, serving.WARMUP_FILE)).as_numpy_iterator())
    assert len(records) == 3
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.name == "cryoet"
        signature = loaded.signatures[request.model_spec.signature_name]
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        outputs = signature(**inputs)
        assert outputs["probabilities"].shape == inputs["images"].shape[:3] + (6,)


def test_saved_model_cli_lists_the_signature(exported):
    _, path, _ = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert "signature_def['serving_default']" in text
    assert "inputs['images'] tensor_info:" in text and "shape: (-1, -1, -1, 1)" in text
    assert "outputs['labels'] tensor_info:" in text and "dtype: DT_INT32" in text
    assert "outputs['probabilities'] tensor_info:" in text and "shape: (-1, -1, -1, 6)" in text


def test_bioimageio_package_validates(exported, cryoet_task, tiny_cryoet_config, tmp_path):
    import json
    import zipfile

    from bioimageio.spec import load_description

    from biomodels.export.bioimageio import write_package

    _, path, _ = exported
    package = write_package(cryoet_task, path, tiny_cryoet_config, str(tmp_path / "1.bioimageio.zip"), pixel_size=20.0)
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        rdf = json.loads(archive.read("rdf.yaml"))
    assert {"rdf.yaml", "README.md", "saved_model.zip", "test_input_images.npy", "test_output_probabilities.npy"} <= names
    assert rdf["inputs"][0]["axes"][1] == {"type": "space", "id": "y", "size": {"min": 4, "step": 4}, "unit": "angstrom", "scale": 20.0}
    description = load_description(package, perform_io_checks=True)
    summary = description.validation_summary
    errors = [f"{error.loc}: {error.msg}" for detail in summary.details for error in detail.errors]
    assert summary.status in ("passed", "valid-format"), errors
    # hash seed 2 gave bioimageio.core the outputs of a two-output signature in the wrong order
    assert_bioimageio_core_passes(package, seeds=(1, 2))


def test_reproducibility_tolerances_fit_each_test_tensor():
    import numpy as np

    from biomodels.export.bioimageio import reproducibility_tolerances

    outputs = {
        "probabilities": np.array([0.0, 0.5, 1.0], np.float32),
        "flows": np.array([-0.2, 0.02], np.float32),
        "cellprob": np.array([-3.0, -0.5], np.float32),
        "labels": np.array([0, 2], np.int32),
    }
    entries = {entry["output_ids"][0]: entry for entry in reproducibility_tolerances(outputs)}
    assert set(entries) == {"probabilities", "flows", "labels"}
    assert entries["probabilities"]["absolute_tolerance"] == 1e-3
    assert entries["flows"]["absolute_tolerance"] == pytest.approx(2e-4)
    assert entries["labels"]["absolute_tolerance"] == 0 and entries["labels"]["relative_tolerance"] == 0
