"""Predictors for models served by TensorFlow Serving, over REST or gRPC.

    RestPredictor("http://host:8501/v1/models/cryoet")        # or …/versions/2, or model="cryoet"
    GrpcPredictor("grpc://host:8500", model="cryoet")

Signatures come from the server's metadata (REST `GET /v1/models/NAME[/versions/V]/metadata`,
gRPC `GetModelMetadata`), parsed into TF Serving's own message types (REST's JSON by
protobuf's JSON parser, which takes either spelling of a field). Large batches are
split into requests of at most `max_batch_size`; unavailability (connection refused,
HTTP 5xx, gRPC UNAVAILABLE) is retried with exponential back-off; a refusal is one clear
error carrying the server's message. The REST wire format (columnar or row JSON, base64
binary strings, an answer without names where a signature has one output) is translated
in `rest_request` and `RestPredictor._outputs` only.
"""

import base64
import json
import re
import time
import urllib.error
import urllib.request

import numpy as np

from biomodels.errors import ServingError
from biomodels.predictors.base import Predictor, Signature, TensorInfo

REST_PATH = re.compile(r"^(?P<base>https?://[^/]+)(?:/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+))?)?/?$")
RETRIED_GRPC_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")


class _Unavailable(Exception):
    """The server could not be reached or answered 5xx: worth another try."""


class _ServedPredictor(Predictor):
    """What REST and gRPC share: batch splitting, retries, signatures from metadata."""

    remote = True

    def __init__(self, source, model, *, version, max_batch_size, retries, backoff_seconds, timeout_seconds):
        super().__init__(source)
        if not model:
            raise ServingError(f"{source}: name the model (model=... or /v1/models/NAME in the URL)")
        self.model, self.version = model, int(version) if version else None
        self.max_batch_size = max_batch_size
        self.retries, self.backoff_seconds, self.timeout_seconds = retries, backoff_seconds, timeout_seconds
        self._signatures = None

    @property
    def signatures(self):
        if self._signatures is None:
            self._signatures = signatures_from_metadata(self._signature_defs())
        return self._signatures

    def _predict(self, signature, inputs):
        size = len(next(iter(inputs.values())))
        parts = [self._predict_once(signature, {name: value[start:start + self.max_batch_size] for name, value in inputs.items()})
                 for start in range(0, size, self.max_batch_size)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _with_retries(self, call):
        delay = self.backoff_seconds
        for attempt in range(self.retries + 1):
            try:
                return call()
            except _Unavailable as error:
                last = str(error)
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise ServingError(f"unavailable after {self.retries + 1} attempts: {last}")


class RestPredictor(_ServedPredictor):
    def __init__(self, url, model=None, *, version=None, max_batch_size=8, retries=4, backoff_seconds=0.5,
                 timeout_seconds=120, rest_format="columnar"):
        match = REST_PATH.match(url)
        if not match:
            raise ServingError(f"{url}: expected http://host:port[/v1/models/NAME[/versions/N]]")
        if rest_format not in ("columnar", "row"):
            raise ValueError("rest_format is 'columnar' or 'row'")
        super().__init__(url, match["model"] or model, version=match["version"] or version, max_batch_size=max_batch_size,
                         retries=retries, backoff_seconds=backoff_seconds, timeout_seconds=timeout_seconds)
        self.base, self.rest_format = match["base"], rest_format

    def metadata(self):
        """The server's answer to GET …/metadata, as JSON."""
        return self._with_retries(lambda: self._http("GET", f"{self._model_url()}/metadata"))

    def _signature_defs(self):
        """The SignatureDef map of the metadata, parsed by protobuf's own JSON parser into
        TF Serving's message types (it takes both spellings of a field, `tensor_shape`
        and `tensorShape`, as protobuf's JSON mapping allows)."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        response = get_model_metadata_pb2.GetModelMetadataResponse()
        try:
            json_format.ParseDict(self.metadata(), response, ignore_unknown_fields=True)
        except json_format.ParseError as error:
            raise ServingError(f"{self.source}: its metadata is not a GetModelMetadataResponse "
                               f"({str(error).splitlines()[0]})") from None
        return _signature_map(response, self.source)

    def _predict_once(self, signature, inputs):
        body = rest_request(inputs, signature, self.rest_format)
        return self._outputs(signature, self._with_retries(lambda: self._http("POST", f"{self._model_url()}:predict", body)))

    def _outputs(self, signature, answer):
        """{name: array} from a REST answer: columnar "outputs" or row "predictions", each
        a dict by output name, or the bare value where the signature has one output (its
        name then comes from the metadata). JSON has no float width: floats come back as
        float32, TensorFlow's usual."""
        if "outputs" in answer:
            outputs = answer["outputs"]
            named = outputs if isinstance(outputs, dict) else None
        else:
            rows = answer["predictions"]
            named = ({name: [row[name] for row in rows] for name in rows[0]}
                     if rows and isinstance(rows[0], dict) else None)
            outputs = rows
        if named is None:
            names = list(self.signatures[signature].outputs) if signature in self.signatures else []
            if len(names) != 1:
                raise ServingError(f"{self.source}: an answer without output names for signature {signature!r}, "
                                   f"whose metadata lists outputs {names}")
            named = {names[0]: outputs}
        arrays = {name: np.asarray(value) for name, value in named.items()}
        return {name: value.astype(np.float32) if value.dtype.kind == "f" else value for name, value in arrays.items()}

    def _model_url(self):
        version = f"/versions/{self.version}" if self.version else ""
        return f"{self.base}/v1/models/{self.model}{version}"

    def _http(self, method, url, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            message = _server_message(error)
            if 400 <= error.code < 500:
                raise ServingError(f"{url}: the server refused the request ({error.code}): {message}") from None
            raise _Unavailable(f"{url}: {error.code} {message}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise _Unavailable(f"{url}: {getattr(error, 'reason', error)}") from None


class GrpcPredictor(_ServedPredictor):
    def __init__(self, address, model=None, *, version=None, max_batch_size=8, retries=4, backoff_seconds=0.5,
                 timeout_seconds=120):
        super().__init__(address, model, version=version, max_batch_size=max_batch_size, retries=retries,
                         backoff_seconds=backoff_seconds, timeout_seconds=timeout_seconds)
        self.target = address[len("grpc://"):].rstrip("/") if address.startswith("grpc://") else address
        self._stub = None

    def _signature_defs(self):
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=self._model_spec(None))
        request.metadata_field.append("signature_def")
        return _signature_map(self._call("GetModelMetadata", request), self.source)

    def _predict_once(self, signature, inputs):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(model_spec=self._model_spec(signature))
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        response = self._call("Predict", request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def _model_spec(self, signature):
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=self.model, signature_name=signature or "")
        if self.version:
            spec.version.value = self.version
        return spec

    def _call(self, method, request):
        import grpc

        def once():
            try:
                return getattr(self._connection(), method)(request, timeout=self.timeout_seconds)
            except grpc.RpcError as error:
                if error.code().name in RETRIED_GRPC_CODES:
                    raise _Unavailable(f"{self.source}: {error.code().name} {error.details()}") from None
                raise ServingError(f"{self.source}: the server refused the request ({error.code().name}): "
                                   f"{error.details()}") from None

        return self._with_retries(once)

    def _connection(self):
        if self._stub is None:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(self.target, options))
        return self._stub


def _signature_map(response, source):
    """The SignatureDef map (name -> SignatureDef) of a GetModelMetadataResponse."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(signature_map):
        raise ServingError(f"{source}: its metadata holds no SignatureDefMap under signature_def")
    return signature_map.signature_def


def signatures_from_metadata(signature_defs):
    """{name: Signature} from TF Serving's SignatureDef map (name -> tensorflow
    SignatureDef message); TensorFlow's internal signatures (`__saved_model_init_op`),
    which the map lists too, are left out."""
    return {name: Signature(inputs={key: _tensor_info(value) for key, value in definition.inputs.items()},
                            outputs={key: _tensor_info(value) for key, value in definition.outputs.items()})
            for name, definition in signature_defs.items() if not name.startswith("__")}


def _tensor_info(value):
    """TensorInfo of a tensorflow TensorInfo message: its dtype's name and shape (None
    for an unknown rank, None for each unknown size)."""
    from tensorflow.python.framework import dtypes

    dtype = dtypes.as_dtype(value.dtype).name if value.dtype else "invalid"
    if value.tensor_shape.unknown_rank:
        return TensorInfo(dtype, None)
    return TensorInfo(dtype, tuple(dim.size if dim.size >= 0 else None for dim in value.tensor_shape.dim))


def _server_message(error):
    try:
        return json.loads(error.read()).get("error", "")
    except (ValueError, AttributeError):
        return error.reason


def _to_json(value):
    """Nested lists for JSON; bytes become {"b64": ...} as TF Serving's REST API wants."""
    value = np.asarray(value)
    if value.dtype.kind in ("S", "O"):
        flat = [{"b64": base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode()} for v in value.ravel()]
        return np.array(flat, dtype=object).reshape(value.shape).tolist()
    return value.tolist()


def rest_request(inputs, signature_name, rest_format="columnar"):
    """The JSON body of a TF Serving REST :predict request."""
    if rest_format == "columnar":
        return {"signature_name": signature_name, "inputs": {name: _to_json(value) for name, value in inputs.items()}}
    names = list(inputs)
    if len(names) == 1:
        instances = _to_json(inputs[names[0]])
    else:
        size = len(inputs[names[0]])
        instances = [{name: _to_json(inputs[name][i]) for name in names} for i in range(size)]
    return {"signature_name": signature_name, "instances": instances}
