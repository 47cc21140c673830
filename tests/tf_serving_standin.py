"""A stand-in for TensorFlow Serving on 127.0.0.1, written from its documentation
(tensorflow_serving/g3doc/api_rest.md; the PredictionService gRPC API) because the
server binary cannot be installed where these tests run. It serves real SavedModels and
keeps the documented quirks a client must handle:

- REST `POST /v1/models/NAME[/versions/V]:predict` takes row (`instances`) or columnar
  (`inputs`) JSON; a signature with ONE output answers WITHOUT its name
  (`{"predictions": [v, …]}`, `{"outputs": v}`), several outputs as a list of objects
  or one object by name; JSON numbers are converted to the signature's input dtypes;
  `NaN`, `Infinity` and `-Infinity` tokens are read and written.
- `GET /v1/models/NAME[/versions/V]` answers the model's version status and
  `GET …/metadata` a GetModelMetadataResponse as JSON, the SignatureDef map of the
  SavedModel (TensorFlow's internal `__saved_model_init_op` included).
- Every error is `{"error": message}`: 404 "Servable not found for request:
  Latest(NAME)" or "Specific(NAME, V)" for an unknown model or version, 400 for a bad
  request (a missing input, unequal 0-th dimensions in the row format).
- gRPC `Predict` and `GetModelMetadata`, with NOT_FOUND and INVALID_ARGUMENT the same way.

`failures=N` answers the first N predict requests with 503 (a model still loading), and
`requests` records (path, body) of every REST predict request. `metadata_names="json"`
writes the metadata's fields in protobuf's JSON spelling (`tensorShape`), which its JSON
mapping allows beside the proto field names TF Serving writes (`tensor_shape`).
"""

import http.server
import json
import re
import threading
from concurrent import futures

import numpy as np
import tensorflow as tf

REST_PATH = re.compile(r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<verb>:predict|/metadata)?$")


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


def signature_defs(saved_model_dir):
    """The SavedModel's SignatureDef map as proto messages {name: SignatureDef}."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(f"{saved_model_dir}/saved_model.pb", "rb") as handle:
        saved.ParseFromString(handle.read())
    return dict(saved.meta_graphs[0].signature_def)


class Servable:
    """One version of one model: its loaded signatures and SignatureDefs."""

    def __init__(self, path):
        self.loaded = tf.saved_model.load(str(path))
        self.definitions = signature_defs(path)

    def predict(self, signature_name, inputs):
        if signature_name not in self.loaded.signatures:
            raise BadRequest(f"Serving signature name: \"{signature_name}\" not found in signature def")
        function = self.loaded.signatures[signature_name]
        specs = function.structured_input_signature[1]
        missing = sorted(set(specs) - set(inputs))
        if missing:
            raise BadRequest(f"Missing input tensor alias: {missing[0]}")
        extra = sorted(set(inputs) - set(specs))
        if extra:
            raise BadRequest(f"input tensor alias not found in signature: {extra[0]}")
        tensors = {name: tf.constant(np.asarray(value) if specs[name].dtype == tf.string
                                     else np.asarray(value).astype(specs[name].dtype.as_numpy_dtype))
                   for name, value in inputs.items()}
        return {name: value.numpy() for name, value in function(**tensors).items()}


class TFServingStandIn:
    """REST and gRPC servers over {model name: {version: SavedModel folder}}."""

    def __init__(self, models, failures=0, metadata_names="proto"):
        self.models = {name: {int(v): Servable(path) for v, path in versions.items()} for name, versions in models.items()}
        self.failures, self.requests = failures, []
        self.metadata_names = metadata_names
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.rest_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._grpc, port = self._grpc_server()
        self.grpc_url = f"grpc://127.0.0.1:{port}"

    def close(self):
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def servable(self, name, version=None):
        """(version, Servable); NotFound as TF Serving words it."""
        versions = self.models.get(name, {})
        if version is None:
            if not versions:
                raise NotFound(f"Servable not found for request: Latest({name})")
            version = max(versions)
        if version not in versions:
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return version, versions[version]

    def metadata(self, name, version):
        from google.protobuf import json_format

        version, servable = self.servable(name, version)
        response = _metadata_response(name, version, servable)
        return json_format.MessageToDict(response, preserving_proto_field_name=self.metadata_names == "proto")

    # -- REST ---------------------------------------------------------------------------
    def _handler(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code, body):
                data = json.dumps(body).encode()  # NaN and Infinity as bare tokens, as TF Serving writes them
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, verb):
                match = REST_PATH.match(self.path)
                if not match or (match["verb"] or "") != verb:
                    raise BadRequest(f"Malformed request: {self.command} {self.path}")
                return match["model"], int(match["version"]) if match["version"] else None

            def do_GET(self):
                try:
                    match = REST_PATH.match(self.path)
                    if match and match["verb"] == "/metadata":
                        self._answer(200, outer.metadata(*self._route("/metadata")))
                    else:
                        name, version = self._route("")
                        versions = [version] if version else sorted(outer.models.get(name, {}))
                        for v in versions:
                            outer.servable(name, v)
                        if not versions:
                            outer.servable(name)
                        self._answer(200, {"model_version_status": [
                            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                            for v in versions]})
                except NotFound as error:
                    self._answer(404, {"error": str(error)})
                except BadRequest as error:
                    self._answer(400, {"error": str(error)})

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    request = json.loads(body)
                except ValueError as error:
                    return self._answer(400, {"error": f"JSON Parse error: {error}"})
                outer.requests.append((self.path, request))
                if outer.failures > 0:
                    outer.failures -= 1
                    return self._answer(503, {"error": "Servable not available: the model is loading"})
                try:
                    name, version = self._route(":predict")
                    _, servable = outer.servable(name, version)
                    signature = request.get("signature_name") or "serving_default"
                    self._answer(200, rest_predict(servable, signature, request))
                except NotFound as error:
                    self._answer(404, {"error": str(error)})
                except BadRequest as error:
                    self._answer(400, {"error": str(error)})

        return Handler

    # -- gRPC ---------------------------------------------------------------------------
    def _grpc_server(self):
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        outer = self

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def _servable(self, spec, context):
                try:
                    return outer.servable(spec.name, spec.version.value if spec.HasField("version") else None)
                except NotFound as error:
                    context.abort(grpc.StatusCode.NOT_FOUND, str(error))

            def Predict(self, request, context):
                version, servable = self._servable(request.model_spec, context)
                inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
                signature = request.model_spec.signature_name or "serving_default"
                try:
                    outputs = servable.predict(signature, inputs)
                except BadRequest as error:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
                response = predict_pb2.PredictResponse()
                response.model_spec.name, response.model_spec.signature_name = request.model_spec.name, signature
                response.model_spec.version.value = version
                for name, value in outputs.items():
                    response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
                return response

            def GetModelMetadata(self, request, context):
                if list(request.metadata_field) != ["signature_def"]:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Metadata field signature_def must be requested")
                version, servable = self._servable(request.model_spec, context)
                return _metadata_response(request.model_spec.name, version, servable)

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                             options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return server, port


def _metadata_response(name, version, servable):
    from tensorflow_serving.apis import get_model_metadata_pb2

    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, definition in servable.definitions.items():
        signature_map.signature_def[key].CopyFrom(definition)
    response.metadata["signature_def"].Pack(signature_map)
    return response


def rest_inputs(request, only_input):
    """{input name: value} of a :predict body by the documented rules: row `instances`
    (values, or objects by input name) or columnar `inputs` (one value, or an object by
    name); a bare value is the signature's only input, named by `only_input()`."""
    if "instances" in request:
        instances = request["instances"]
        if instances and isinstance(instances[0], dict) and set(instances[0]) != {"b64"}:
            names = list(instances[0])
            if any(set(row) != set(names) for row in instances):
                raise BadRequest("Failed to process element: every instance must name the same inputs")
            return {name: [decode_b64(row[name]) for row in instances] for name in names}
        return {only_input(): [decode_b64(row) for row in instances]}
    if "inputs" in request:
        given = request["inputs"]
        if isinstance(given, dict):
            return {name: decode_b64(value) for name, value in given.items()}
        return {only_input(): decode_b64(given)}
    raise BadRequest("Missing 'inputs' or 'instances' key")


def rest_predict(servable, signature, request):
    """The documented answer to a :predict body, row or columnar."""
    inputs = rest_inputs(request, lambda: _only_input(servable, signature))
    outputs = servable.predict(signature, inputs)
    if "instances" in request:
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values())).tolist()}
        sizes = {len(value) for value in outputs.values()}
        if len(sizes) != 1:
            raise BadRequest("Tensors of a row-format answer must share their 0-th dimension")
        return {"predictions": [{name: value[i].tolist() for name, value in outputs.items()} for i in range(sizes.pop())]}
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {name: value.tolist() for name, value in outputs.items()}}


def _only_input(servable, signature):
    inputs = list(servable.definitions[signature].inputs) if signature in servable.definitions else []
    if len(inputs) != 1:
        raise BadRequest("A bare input value needs a signature with exactly one input")
    return inputs[0]


def decode_b64(value):
    """{"b64": …} objects become bytes; everything else as JSON gave it."""
    import base64

    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [decode_b64(item) for item in value]
    return value
