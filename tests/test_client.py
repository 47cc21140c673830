"""The REST and gRPC predictors against stand-in servers on 127.0.0.1 that follow TF
Serving's documented REST and gRPC interfaces, backed by a real exported SavedModel."""

import json
import socket

import numpy as np
import pytest
import tensorflow as tf

from biomodels.export import serving
from biomodels.errors import InputError, ServingError
from biomodels.predictors import GrpcPredictor, RestPredictor, SavedModelPredictor
from biomodels.predictors.tf_serving import rest_request
from biomodels.models import CryoETUNet
from biomodels.pipelines import readers
from conftest import run_cli
from tf_serving_standin import TFServingStandIn, rest_inputs


def decode_rest_json(body):
    """The stand-in server's reading of a :predict body, as arrays."""
    return {name: np.asarray(value) for name, value in rest_inputs(body, lambda: "inputs").items()}


def test_rest_json_round_trip_columnar_row_and_b64():
    images = np.random.default_rng(0).normal(size=(2, 3, 4, 1)).astype(np.float32)
    decoded = decode_rest_json(json.loads(json.dumps(rest_request({"images": images}, "serving_default"))))
    np.testing.assert_array_equal(decoded["images"], images)
    both = {"a": np.arange(6, dtype=np.int32).reshape(2, 3), "b": np.array([b"\x00\xff", b"xy"], dtype=object)}
    for layout in ("columnar", "row"):
        body = json.loads(json.dumps(rest_request(both, "sig", layout)))
        assert body["signature_name"] == "sig"
        decoded = decode_rest_json(body)
        np.testing.assert_array_equal(decoded["a"], both["a"])
        assert list(decoded["b"]) == [b"\x00\xff", b"xy"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from biomodels import config as config_lib
    from biomodels import tasks
    from conftest import TINY_CRYOET

    task = tasks.get("cryoet")
    config = config_lib.resolve(task, "quick", TINY_CRYOET)
    root = tmp_path_factory.mktemp("serving")
    path = serving.export_version(task, CryoETUNet(base_filters=4, depth=3), config, str(root), warmup=0)
    return path, tf.saved_model.load(path)


@pytest.fixture
def server(export):
    with TFServingStandIn({"cryoet": {1: export[0]}}) as standin:
        yield standin


def test_rest_predictions_match_the_saved_model_and_split_batches(export, server):
    _, loaded = export
    images = np.random.default_rng(1).normal(size=(5, 16, 24, 1)).astype(np.float32)
    client = RestPredictor(f"{server.rest_url}/v1/models/cryoet/versions/1", max_batch_size=2)
    outputs = client("serving_default", images=images)
    expected = loaded.signatures["serving_default"](images=tf.constant(images))
    assert np.abs(outputs["probabilities"] - expected["probabilities"].numpy()).max() < 1e-5
    np.testing.assert_array_equal(outputs["labels"], expected["labels"].numpy())
    assert [path for path, _ in server.requests] == ["/v1/models/cryoet/versions/1:predict"] * 3
    assert sorted(client.signatures) == ["serving_default", "standardised"]
    assert client.signatures["serving_default"].inputs["images"].shape == (None, None, None, 1)
    assert client.signatures["serving_default"].outputs["labels"].dtype == "int32"
    rows = RestPredictor(f"{server.rest_url}/v1/models/cryoet", rest_format="row")(images=images)
    np.testing.assert_array_equal(rows["labels"], expected["labels"].numpy())


def test_rest_metadata_in_either_json_spelling_gives_the_same_signatures(export):
    """Protobuf's JSON mapping lets a server write `tensorShape` for `tensor_shape`: the
    metadata is parsed into TF Serving's message types, so both give the signatures'
    shapes and dtypes; metadata that is not a GetModelMetadataResponse is one line."""
    from biomodels.tasks.ccp.serving import served_trace_channels
    from biomodels.predictors import Signature, TensorInfo

    for names in ("proto", "json"):
        with TFServingStandIn({"cryoet": {1: export[0]}}, metadata_names=names) as standin:
            signatures = RestPredictor(f"{standin.rest_url}/v1/models/cryoet").signatures
        assert signatures["serving_default"].inputs["images"] == TensorInfo("float32", (None, None, None, 1)), names
        assert signatures["serving_default"].outputs["probabilities"].shape == (None, None, None, 6), names
    client = RestPredictor("http://127.0.0.1:9/v1/models/cryoet", retries=0)
    client.metadata = lambda: {"metadata": {"signature_def": {"@type": "type.googleapis.com/nothing.Known"}}}
    with pytest.raises(ServingError, match="cryoet: its metadata is not a GetModelMetadataResponse"):
        client.signatures
    # a served ccp traces model whose width is not stated: one line, not a guess of two channels
    unknown = type("Served", (), {"config": {}, "source": "http://host:8501/v1/models/ccp", "signatures": {
        "serving_default": Signature(inputs={"traces": TensorInfo("float32", (None, None, None))}, outputs={})}})()
    with pytest.raises(InputError, match="models/ccp: its `traces` input has no width"):
        served_trace_channels(unknown)


def test_rest_retries_while_unavailable_and_reports_refusals(export):
    server = TFServingStandIn({"cryoet": {1: export[0]}}, failures=2)
    try:
        client = RestPredictor(server.rest_url, model="cryoet", backoff_seconds=0.01)
        assert client(images=np.zeros((1, 8, 8, 1), np.float32))["labels"].shape == (1, 8, 8)
        assert len(server.requests) == 3
        with pytest.raises(ServingError, match=r"refused the request \(400\): Missing input tensor alias: images"):
            client(pictures=np.zeros((1, 8, 8, 1), np.float32))
        with pytest.raises(ServingError, match=r"\(404\): Servable not found for request: Latest\(nope\)"):
            RestPredictor(server.rest_url, model="nope", retries=0)(images=np.zeros((1, 8, 8, 1), np.float32))
        with pytest.raises(ServingError, match=r"\(404\): Servable not found for request: Specific\(cryoet, 7\)"):
            RestPredictor(server.rest_url, model="cryoet", version=7, retries=0).signatures
    finally:
        server.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServingError, match="unavailable after 2 attempts"):
        RestPredictor(f"http://127.0.0.1:{port}", model="cryoet", retries=1, backoff_seconds=0.01)(
            images=np.zeros((1, 8, 8, 1), np.float32))


def test_grpc_predictions_and_metadata_match_the_saved_model(export, server):
    _, loaded = export
    images = np.random.default_rng(2).normal(size=(3, 12, 20, 1)).astype(np.float32)
    client = GrpcPredictor(server.grpc_url, model="cryoet", max_batch_size=2)
    outputs = client(images=images)
    expected = loaded.signatures["serving_default"](images=tf.constant(images))
    assert outputs["probabilities"].dtype == np.float32 and outputs["labels"].dtype == np.int32
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"].numpy(), atol=1e-6)
    assert client.signatures["serving_default"].outputs["probabilities"].shape == (None, None, None, 6)
    with pytest.raises(ServingError, match=r"refused the request \(NOT_FOUND\)"):
        GrpcPredictor(server.grpc_url, model="nope", retries=0)(images=images)


def test_local_saved_model_through_the_same_interface(export):
    path, loaded = export
    images = np.random.default_rng(3).normal(size=(1, 8, 8, 1)).astype(np.float32)
    outputs = SavedModelPredictor(path)("serving_default", images=images)
    np.testing.assert_allclose(outputs["probabilities"], loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy())


@pytest.mark.slow
def test_predict_command_uses_a_server_like_a_local_export(export, server, tmp_path):
    path, _ = export
    volume = np.random.default_rng(4).normal(size=(2, 24, 40)).astype(np.float32)
    readers.write_mrc(str(tmp_path / "tomo.mrc"), volume, voxel_size=(20.0, 20.0, 20.0))
    for name, model in (("remote", f"{server.rest_url}/v1/models/cryoet"), ("local", path)):
        result = run_cli("biomodels.predict", "--task=cryoet", f"--model={model}", f"--input={tmp_path / 'tomo.mrc'}",
                         f"--output={tmp_path / name}", "--tile=32", "--overlap=8")
        assert result.returncode == 0, result.stderr[-2000:]
    remote = readers.read_mrc(str(tmp_path / "remote" / "tomo_labels.mrc"))
    local = readers.read_mrc(str(tmp_path / "local" / "tomo_labels.mrc"))
    np.testing.assert_array_equal(remote.data, local.data)
    assert remote.voxel_size == pytest.approx((20.0, 20.0, 20.0))
