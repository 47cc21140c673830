"""Write a task's model as a SavedModel whose signatures carry the preprocessing, so
TensorFlow Serving or any TensorFlow process runs it without biomodels installed
(`biomodels.predictors` reads it back)."""

import os
import shutil

from biomodels import config as config_lib
from biomodels.errors import InputError
from biomodels.predictors.base import signature_of
from biomodels.predictors.local import EXPORT_INFO


def export_saved_model(task, model, config, path, metadata=None, before_publish=None):
    """Write the SavedModel of `model` to `path` (through a temporary folder that is
    renamed when complete; `before_publish(folder)` may add files to it first);
    returns `path`."""
    import tensorflow as tf

    if os.path.exists(path):
        raise InputError(path, "already exists; choose another export path or version")
    functions = task.bind(config, calibration=(metadata or {}).get("calibration")).serving_functions(model)
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
            signature = signature_of(function)
            signatures[name] = {part: {key: {"dtype": info.dtype, "shape": list(info.shape)} for key, info in tensors.items()}
                                for part, tensors in (("inputs", signature.inputs), ("outputs", signature.outputs))}
        from biomodels.version import __version__

        info = {"task": task.name, "config": config_lib.to_dict(config), "signatures": signatures,
                "preprocessing": task.preprocess.__doc__.strip(), "biomodels": __version__,
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
