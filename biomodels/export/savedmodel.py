"""Write a task's model as a SavedModel whose signatures carry the preprocessing, so
TensorFlow Serving or any TensorFlow process runs it without biomodels installed;
and load either a SavedModel or a training run's directory back as signatures."""

import os
import shutil

import numpy as np

from biomodels import config as config_lib
from biomodels.errors import InputError

EXPORT_INFO = "export.json"


def export_saved_model(task, model, config, path, metadata=None, before_publish=None):
    """Write the SavedModel of `model` to `path` (through a temporary folder that is
    renamed when complete; `before_publish(folder)` may add files to it first);
    returns `path`."""
    import tensorflow as tf

    if os.path.exists(path):
        raise InputError(path, "already exists; choose another export path or version")
    functions = task.serving_functions(model, config, (metadata or {}).get("calibration"))
    module = tf.Module()
    module.model = model
    for name, function in functions.items():
        setattr(module, f"signature_{name}", function)
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(module, tmp, signatures={name: fn.get_concrete_function() for name, fn in functions.items()})
        signatures = {}
        for name, function in functions.items():
            concrete = function.get_concrete_function()
            signatures[name] = {
                "inputs": {spec.name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()} for spec in concrete.structured_input_signature[0]},
                "outputs": {key: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()} for key, spec in concrete.structured_outputs.items()},
            }
        import biomodels

        info = {"task": task.name, "config": config_lib.to_dict(config), "signatures": signatures,
                "preprocessing": task.preprocess.__doc__.strip(), "biomodels": biomodels.__version__,
                "tensorflow": tf.__version__, **(metadata or {})}
        config_lib.write_json_atomic(os.path.join(tmp, EXPORT_INFO), info)
        if before_publish is not None:
            before_publish(tmp)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def replace_saved_model(task, model, config, path, metadata=None, before_publish=None):
    """Export beside `path`, then put the new SavedModel in place of whatever was at
    `path`; the old one is removed only once the new one is whole."""
    directory, name = os.path.split(os.path.abspath(path))
    staged = export_saved_model(task, model, config, os.path.join(directory, f".{name}.new-{os.getpid()}"),
                                metadata, before_publish)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(staged, path)
    return path


class Predictor:
    """Named signatures taking and returning numpy arrays, from an export or a run."""

    def __init__(self, functions, source, config=None, calibration=None):
        self._functions = functions
        self.source = source
        #: the training configuration as a dict, when the export or run records it
        self.config = config or {}
        #: what the task fitted on the validation split (Task.calibrate), when recorded
        self.calibration = calibration or {}

    @property
    def signature_names(self):
        return sorted(self._functions)

    def signature(self, name):
        import tensorflow as tf

        if name not in self._functions:
            raise InputError(self.source, f"has no signature {name!r} (it has {', '.join(sorted(self._functions))})")
        function = self._functions[name]

        def call(**inputs):
            tensors = {key: tf.convert_to_tensor(value) for key, value in inputs.items()}
            return {key: np.asarray(value) for key, value in function(**tensors).items()}

        return call


def is_saved_model(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def load_predictor(task, path):
    """A Predictor from a SavedModel directory, a training run's model_dir, or the
    address of a TF Serving server (http://host:8501/v1/models/NAME, grpc://host:8500)."""
    if path.startswith(("http://", "https://", "grpc://")):
        from biomodels.export.client import ServingClient

        return ServingClient(path, model=task.name)
    if not os.path.isdir(path):
        raise InputError(path, "no such directory: give a model_dir of biomodels.train or an exported SavedModel")
    if is_saved_model(path):
        return saved_model_predictor(path)
    config = run_config(task, path)
    model = load_trained_model(path)
    calibration = config_lib.read_calibration(path)
    return Predictor(task.serving_functions(model, config, calibration), path, config_lib.to_dict(config), calibration)


def saved_model_predictor(path):
    """A Predictor over the signatures of the SavedModel in `path`, with the training
    configuration from its export.json when there is one."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    functions = {name: _keep_alive(fn, loaded) for name, fn in loaded.signatures.items()}
    info_path = os.path.join(path, EXPORT_INFO)
    info = config_lib.read_json(info_path) if os.path.isfile(info_path) else {}
    return Predictor(functions, path, info.get("config"), info.get("calibration"))


def _keep_alive(function, owner):
    """Signature functions hold weak references to their SavedModel: keep it alive."""

    def call(**inputs):
        return function(**inputs)

    call.owner = owner
    return call


def run_config(task, model_dir):
    """The resolved Config stored in a run's config.json, checked against `task`."""
    record = config_lib.read_run_config(model_dir)
    if record.get("task") != task.name:
        raise InputError(os.path.join(model_dir, config_lib.CONFIG_FILE), f"is a run of task {record.get('task')!r}, not {task.name!r}")
    return config_lib.from_dict(task, record["config"])


def load_trained_model(model_dir):
    """best.keras of a run, else last.keras."""
    import keras

    import biomodels.models  # noqa: F401  registers the custom classes for deserialisation

    for name in ("best.keras", "last.keras"):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            try:
                return keras.saving.load_model(path, safe_mode=True)
            except Exception as error:  # a damaged or foreign file
                raise InputError(path, f"cannot load the model ({str(error).splitlines()[0]})") from None
    raise InputError(model_dir, "holds no trained model (best.keras or last.keras): has training finished an epoch?")
