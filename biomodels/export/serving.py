"""The TensorFlow Serving layout around exported SavedModels.

    export_dir/
      models.config          one ModelServerConfig (text proto) for every task here
      batching.config        server-wide batching parameters (text proto)
      <task>/<version>/      a SavedModel, with assets.extra/tf_serving_warmup_requests

Version folders appear whole (written under a temporary name, then renamed), so a
server polling export_dir never loads a half-written model.
"""

import logging
import os

import numpy as np

from biomodels.atomic import write_text_atomic
from biomodels.errors import InputError
from biomodels.export.savedmodel import replace_saved_model
from biomodels.predictors.local import is_saved_model

MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
log = logging.getLogger("biomodels")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many

BATCHING_PARAMS_FILE = os.path.join("assets.extra", "batching_params.pbtxt")
#: server-wide batching defaults; each version also carries its task's own in
#: assets.extra/batching_params.pbtxt (read with --enable_per_model_batching_params)
BATCHING_PARAMETERS = {"max_batch_size": 8, "batch_timeout_micros": 5000, "max_enqueued_batches": 64, "num_batch_threads": 4}


def batching_text(parameters):
    """A BatchingParameters text proto: numbers go in their wrapper messages, booleans
    (pad_variable_length_inputs) are plain fields."""
    return "".join(f"{key}: {str(value).lower()}\n" if isinstance(value, bool) else f"{key} {{ value: {value} }}\n"
                   for key, value in parameters.items())


def versions(task_dir):
    """Numeric version folders of a task that hold a SavedModel, sorted."""
    if not os.path.isdir(task_dir):
        return []
    return sorted(int(name) for name in os.listdir(task_dir)
                  if name.isdigit() and is_saved_model(os.path.join(task_dir, name)))


def next_version(task_dir):
    numbers = [int(name) for name in os.listdir(task_dir) if name.isdigit()] if os.path.isdir(task_dir) else []
    return max(numbers, default=0) + 1


def export_run(task, model_dir, export_dir, version=None, warmup=None, overwrite=False):
    """Export the trained model of the run in `model_dir` (with its test metrics and
    calibration) as export_dir/<task>/<version>/; returns the version folder."""
    from biomodels import config as config_lib
    from biomodels.runs import load_trained_model, run_config

    config = run_config(task, model_dir)
    model = load_trained_model(model_dir)
    metrics_path = os.path.join(model_dir, "metrics_test.json")
    metadata = {"metrics_test": config_lib.read_json(metrics_path)} if os.path.isfile(metrics_path) else {}
    metadata["calibration"] = config_lib.read_calibration(task, model_dir)
    return export_version(task, model, config, export_dir, version=version, warmup=warmup, overwrite=overwrite,
                          metadata=metadata)


def export_version(task, model, config, export_dir, *, version=None, warmup=None, overwrite=False, metadata=None):
    """Write export_dir/<task>/<version>/ with warmup requests, then regenerate
    models.config and batching.config; returns the version folder."""
    task_dir = os.path.join(export_dir, task.name)
    version = version or next_version(task_dir)
    path = os.path.join(task_dir, str(version))
    if os.path.exists(path) and not overwrite:
        raise InputError(path, "this version exists; pass --overwrite to replace it or choose another --version")

    def add_serving_assets(folder):
        write_warmup_requests(folder, task, config, warmup)
        write_text_atomic(os.path.join(folder, BATCHING_PARAMS_FILE), batching_text(task.serving_batching or BATCHING_PARAMETERS))

    replace_saved_model(task, model, config, path, metadata, before_publish=add_serving_assets)
    write_server_configs(export_dir)
    return path


def write_warmup_requests(saved_model_dir, task, config, count):
    """assets.extra/tf_serving_warmup_requests: `count` PredictionLog records (at most
    1000; None: each of the task's representative inputs once, every signature
    covered) built from the task's representative inputs, so a server's first real
    request does not pay for graph warm-up."""
    import tensorflow as tf

    if count is not None and count <= 0:
        return None
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        log.warning("no warmup requests written: they need tensorflow-serving-api "
                    "(pip install 'biomodels-keras[serving]'); --warmup=0 skips them without this warning")
        return None
    examples = task.bind(config).warmup_inputs()
    count = len(examples) if count is None else count
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for index in range(min(count, MAX_WARMUP_RECORDS)):
            signature, inputs = examples[index % len(examples)]
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=task.name, signature_name=signature))
            for name, array in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(array)))
            record = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(record.SerializeToString())
    return path


def write_server_configs(export_dir, base_path="/models"):
    """models.config naming every task under export_dir (served from `base_path`/<task>,
    where the container mounts export_dir), and batching.config. Regenerated after
    each export, so several tasks exported into one folder make one server config."""
    tasks = sorted(name for name in os.listdir(export_dir) if versions(os.path.join(export_dir, name)))
    entries = "".join(
        f'  config {{\n    name: "{name}"\n    base_path: "{base_path}/{name}"\n    model_platform: "tensorflow"\n  }}\n'
        for name in tasks
    )
    write_text_atomic(os.path.join(export_dir, MODELS_CONFIG), f"model_config_list {{\n{entries}}}\n")
    write_text_atomic(os.path.join(export_dir, BATCHING_CONFIG), batching_text(BATCHING_PARAMETERS))

