"""The REST and gRPC predictors against stand-in servers on 127.0.0.1 that follow TF
Serving's documented REST and gRPC interfaces, backed by a real exported SavedModel."""

import base64
import http.server
import json
import re
import socket
import threading
from concurrent import futures

import numpy as np
import pytest
import tensorflow as tf

from biomodels.export import serving
from biomodels.errors import ServingError
from biomodels.predictors import GrpcPredictor, RestPredictor, SavedModelPredictor
from biomodels.predictors.tf_serving import rest_request
from biomodels.models import CryoETUNet
from biomodels.pipelines import readers
from conftest import run_cli


def decode_rest_json(body):
    """TF Serving's JSON-to-tensor rules: columnar `inputs` (a dict of named values, or
    one bare value) or row `instances` (a list of values, or of dicts by input name);
    {"b64": ...} objects are binary strings."""

    def tensor(value):
        array = np.asarray(_unwrap_b64(value))
        return array.astype(np.float32) if array.dtype.kind == "f" else array

    if "inputs" in body:
        inputs = body["inputs"]
        return {name: tensor(value) for name, value in inputs.items()} if isinstance(inputs, dict) else {"inputs": tensor(inputs)}
    instances = body["instances"]
    if instances and isinstance(instances[0], dict) and "b64" not in instances[0]:
        return {name: tensor([row[name] for row in instances]) for name in instances[0]}
    return {"inputs": tensor(instances)}


def _unwrap_b64(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_unwrap_b64(item) for item in value]
    return value


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


def signature_defs(saved_model_dir):
    """The SavedModel's SignatureDef map as JSON, as TF Serving's metadata endpoint gives it."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(f"{saved_model_dir}/saved_model.pb", "rb") as handle:
        saved.ParseFromString(handle.read())
    return {name: json_format.MessageToDict(definition, preserving_proto_field_name=True)
            for name, definition in saved.meta_graphs[0].signature_def.items()}


class _RestServer:
    """A TF Serving REST stand-in: POST /v1/models/cryoet[/versions/N]:predict and GET …/metadata."""

    def __init__(self, loaded, failures=0, signature_defs=None):
        self.loaded, self.failures, self.requests = loaded, failures, []
        self.signature_defs = signature_defs or {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if not re.match(r"^/v1/models/cryoet(/versions/\d+)?/metadata$", self.path):
                    return self._answer(404, {"error": "Servable not found"})
                self._answer(200, {"model_spec": {"name": "cryoet"},
                                   "metadata": {"signature_def": {"signature_def": outer.signature_defs}}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body))
                if outer.failures > 0:
                    outer.failures -= 1
                    return self._answer(503, {"error": "model is loading"})
                if not re.match(r"^/v1/models/cryoet(/versions/\d+)?:predict$", self.path):
                    return self._answer(404, {"error": "Servable not found"})
                inputs = decode_rest_json(body)
                if "images" not in inputs:
                    return self._answer(400, {"error": "input 'images' is missing"})
                signature = outer.loaded.signatures[body.get("signature_name", "serving_default")]
                outputs = signature(images=tf.constant(inputs["images"]))
                self._answer(200, {"outputs": {k: v.numpy().tolist() for k, v in outputs.items()}})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rest_server(export):
    server = _RestServer(export[1], signature_defs=signature_defs(export[0]))
    yield server
    server.close()


def test_rest_predictions_match_the_saved_model_and_split_batches(export, rest_server):
    _, loaded = export
    images = np.random.default_rng(1).normal(size=(5, 16, 24, 1)).astype(np.float32)
    client = RestPredictor(f"{rest_server.url}/v1/models/cryoet/versions/1", max_batch_size=2)
    outputs = client("serving_default", images=images)
    expected = loaded.signatures["serving_default"](images=tf.constant(images))
    assert np.abs(outputs["probabilities"] - expected["probabilities"].numpy()).max() < 1e-5
    np.testing.assert_array_equal(outputs["labels"], expected["labels"].numpy())
    assert [path for path, _ in rest_server.requests] == ["/v1/models/cryoet/versions/1:predict"] * 3
    assert list(client.signatures) == ["serving_default"]
    assert client.signatures["serving_default"].inputs["images"].shape == (None, None, None, 1)
    assert client.signatures["serving_default"].outputs["labels"].dtype == "int32"


def test_rest_retries_while_unavailable_and_reports_refusals(export):
    server = _RestServer(export[1], failures=2)
    try:
        client = RestPredictor(server.url, model="cryoet", backoff_seconds=0.01)
        assert client(images=np.zeros((1, 8, 8, 1), np.float32))["labels"].shape == (1, 8, 8)
        assert len(server.requests) == 3
        with pytest.raises(ServingError, match=r"refused the request \(400\): input 'images' is missing"):
            client(pictures=np.zeros((1, 8, 8, 1), np.float32))
        with pytest.raises(ServingError, match=r"\(404\): Servable not found"):
            RestPredictor(server.url, model="nope", retries=0)(images=np.zeros((1, 8, 8, 1), np.float32))
    finally:
        server.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServingError, match="unavailable after 2 attempts"):
        RestPredictor(f"http://127.0.0.1:{port}", model="cryoet", retries=1, backoff_seconds=0.01)(
            images=np.zeros((1, 8, 8, 1), np.float32))


def test_grpc_predictions_match_the_saved_model(export):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    _, loaded = export

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            signature = loaded.signatures[request.model_spec.signature_name or "serving_default"]
            inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
            response = predict_pb2.PredictResponse()
            for name, value in signature(**inputs).items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        images = np.random.default_rng(2).normal(size=(3, 12, 20, 1)).astype(np.float32)
        outputs = GrpcPredictor(f"grpc://127.0.0.1:{port}", model="cryoet", max_batch_size=2)(images=images)
        expected = loaded.signatures["serving_default"](images=tf.constant(images))
        assert outputs["probabilities"].dtype == np.float32 and outputs["labels"].dtype == np.int32
        np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"].numpy(), atol=1e-6)
    finally:
        server.stop(0)


def test_local_saved_model_through_the_same_interface(export):
    path, loaded = export
    images = np.random.default_rng(3).normal(size=(1, 8, 8, 1)).astype(np.float32)
    outputs = SavedModelPredictor(path)("serving_default", images=images)
    np.testing.assert_allclose(outputs["probabilities"], loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy())


@pytest.mark.slow
def test_predict_command_uses_a_server_like_a_local_export(export, rest_server, tmp_path):
    path, _ = export
    volume = np.random.default_rng(4).normal(size=(2, 24, 40)).astype(np.float32)
    readers.write_mrc(str(tmp_path / "tomo.mrc"), volume, voxel_size=(20.0, 20.0, 20.0))
    for name, model in (("remote", f"{rest_server.url}/v1/models/cryoet"), ("local", path)):
        result = run_cli("biomodels.predict", "--task=cryoet", f"--model={model}", f"--input={tmp_path / 'tomo.mrc'}",
                         f"--output={tmp_path / name}", "--tile=32", "--overlap=8")
        assert result.returncode == 0, result.stderr[-2000:]
    remote = readers.read_mrc(str(tmp_path / "remote" / "tomo_labels.mrc"))
    local = readers.read_mrc(str(tmp_path / "local" / "tomo_labels.mrc"))
    np.testing.assert_array_equal(remote.data, local.data)
    assert remote.voxel_size == pytest.approx((20.0, 20.0, 20.0))
