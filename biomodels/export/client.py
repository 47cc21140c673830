"""A client for models served by TensorFlow Serving, over REST or gRPC, that can also
wrap a local SavedModel, so prediction code is the same wherever the model runs.

    client = ServingClient("http://host:8501", model="cryoet")
    client = ServingClient("http://host:8501/v1/models/cryoet/versions/2")
    client = ServingClient("grpc://host:8500", model="cryoet")
    client = ServingClient("serving/cryoet/1")            # a SavedModel folder
    outputs = client.predict({"images": batch})           # {name: numpy array}

Large batches are split into requests of at most `max_batch_size`; unavailability
(connection refused, HTTP 5xx, gRPC UNAVAILABLE) is retried with exponential back-off;
a 4xx answer is a clear error carrying the server's message.
"""

import base64
import json
import re
import time
import urllib.error
import urllib.request

import numpy as np

from biomodels.errors import BiomodelsError

REST_PATH = re.compile(r"^(?P<base>https?://[^/]+)(?:/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+))?)?/?$")


class ServingError(BiomodelsError):
    """The server answered, but refused the request, or could not be reached."""


class ServingClient:
    def __init__(self, url, model=None, version=None, signature=None, max_batch_size=8, retries=4,
                 backoff_seconds=0.5, timeout_seconds=120, rest_format="columnar"):
        self.url = url
        self.signature_name = signature or "serving_default"
        self.max_batch_size = max_batch_size
        self.retries, self.backoff_seconds, self.timeout_seconds = retries, backoff_seconds, timeout_seconds
        if rest_format not in ("columnar", "row"):
            raise ValueError("rest_format is 'columnar' or 'row'")
        self.rest_format = rest_format
        if url.startswith(("http://", "https://")):
            match = REST_PATH.match(url)
            if not match:
                raise ServingError(f"{url}: expected http://host:port[/v1/models/NAME[/versions/N]]")
            self.transport, self.base = "rest", match["base"]
            self.model = match["model"] or model
            self.version = int(match["version"]) if match["version"] else version
        elif url.startswith("grpc://"):
            self.transport, self.base = "grpc", url[len("grpc://"):].rstrip("/")
            self.model, self.version = model, version
        else:
            self.transport, self.model, self.version = "local", model, version
            self._local = _load_local(url)
        if self.transport != "local" and not self.model:
            raise ServingError(f"{url}: name the model (model=... or /v1/models/NAME in the URL)")
        #: the training configuration and validation calibration, known only for a local
        #: SavedModel with its export.json
        self.config = self._local.config if self.transport == "local" else {}
        self.calibration = self._local.calibration if self.transport == "local" else {}

    # -- the Predictor interface used by biomodels.predict -----------------------
    def signature(self, name):
        client = ServingClient.__new__(ServingClient)
        client.__dict__.update(self.__dict__, signature_name=name)
        return lambda **inputs: client.predict(inputs)

    # -- requests ------------------------------------------------------------------
    def predict(self, inputs):
        """{output name: array} for {input name: array}; inputs share the batch axis."""
        inputs = {name: np.asarray(value) for name, value in inputs.items()}
        size = len(next(iter(inputs.values())))
        parts = []
        for start in range(0, size, self.max_batch_size):
            chunk = {name: value[start:start + self.max_batch_size] for name, value in inputs.items()}
            parts.append(self._predict_once(chunk))
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def metadata(self):
        """The model's signatures as TF Serving describes them."""
        if self.transport == "rest":
            return self._with_retries(lambda: self._http("GET", f"{self._rest_model_url()}/metadata"))
        if self.transport == "grpc":
            from google.protobuf import json_format
            from tensorflow_serving.apis import get_model_metadata_pb2

            request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=self._model_spec())
            request.metadata_field.append("signature_def")
            response = self._with_retries(lambda: self._stub().GetModelMetadata(request, timeout=self.timeout_seconds))
            return json_format.MessageToDict(response)
        return {"signature_def": self._local.signature_names}

    def _predict_once(self, inputs):
        if self.transport == "rest":
            body = rest_request(inputs, self.signature_name, self.rest_format)
            answer = self._with_retries(lambda: self._http("POST", f"{self._rest_model_url()}:predict", body))
            return rest_response(answer)
        if self.transport == "grpc":
            import tensorflow as tf
            from tensorflow_serving.apis import predict_pb2

            request = predict_pb2.PredictRequest(model_spec=self._model_spec())
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            response = self._with_retries(lambda: self._stub().Predict(request, timeout=self.timeout_seconds))
            return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        return self._local.signature(self.signature_name)(**inputs)

    def _rest_model_url(self):
        version = f"/versions/{self.version}" if self.version else ""
        return f"{self.base}/v1/models/{self.model}{version}"

    def _model_spec(self):
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=self.model, signature_name=self.signature_name)
        if self.version:
            spec.version.value = int(self.version)
        return spec

    def _stub(self):
        if getattr(self, "_grpc_stub", None) is None:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
            self._grpc_stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(self.base, options))
        return self._grpc_stub

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

    def _with_retries(self, call):
        delay = self.backoff_seconds
        for attempt in range(self.retries + 1):
            try:
                return call()
            except _Unavailable as error:
                last = str(error)
            except Exception as error:  # grpc.RpcError (imported lazily) has a code() method
                code = error.code() if callable(getattr(error, "code", None)) else None
                if code is None or code.name not in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"):
                    if code is not None:
                        raise ServingError(f"{self.url}: the server refused the request ({code.name}): {error.details()}") from None
                    raise
                last = f"{self.url}: {code.name} {error.details()}"
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise ServingError(f"unavailable after {self.retries + 1} attempts: {last}")


class _Unavailable(Exception):
    pass


def _server_message(error):
    try:
        return json.loads(error.read()).get("error", "")
    except (ValueError, AttributeError):
        return error.reason


def _load_local(path):
    from biomodels.export.savedmodel import is_saved_model, saved_model_predictor

    if not is_saved_model(path):
        raise ServingError(f"{path}: not a SavedModel folder nor an http://, https:// or grpc:// address")
    return saved_model_predictor(path)


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


def rest_response(answer):
    """{name: array} from a TF Serving REST answer ("outputs" or "predictions").
    JSON has no float width: floating outputs come back as float32, TensorFlow's usual."""
    if "outputs" in answer:
        outputs = answer["outputs"]
        arrays = {name: np.asarray(value) for name, value in outputs.items()} if isinstance(outputs, dict) else {"output": np.asarray(outputs)}
    else:
        predictions = answer["predictions"]
        if predictions and isinstance(predictions[0], dict):
            arrays = {name: np.asarray([row[name] for row in predictions]) for name in predictions[0]}
        else:
            arrays = {"output": np.asarray(predictions)}
    return {name: value.astype(np.float32) if value.dtype.kind == "f" else value for name, value in arrays.items()}
