"""Predictors that run the model in this process: an in-memory Keras model through its
task's serving functions, a training run's directory, and a local SavedModel."""

import os

import numpy as np

from biomodels import config as config_lib
from biomodels.errors import InputError
from biomodels.predictors.base import Predictor, signature_of

EXPORT_INFO = "export.json"


def is_saved_model(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


class _FunctionPredictor(Predictor):
    """Signatures that are TensorFlow functions of this process."""

    def __init__(self, functions, source, config=None, calibration=None):
        super().__init__(source, config, calibration)
        self._functions = functions
        self._signatures = None

    @property
    def signatures(self):
        if self._signatures is None:
            self._signatures = {name: signature_of(function) for name, function in sorted(self._functions.items())}
        return self._signatures

    def _predict(self, signature, inputs):
        import tensorflow as tf

        if signature not in self._functions:
            raise InputError(self.source, f"has no signature {signature!r} (it has {', '.join(sorted(self._functions))})")
        outputs = self._functions[signature](**{name: tf.convert_to_tensor(value) for name, value in inputs.items()})
        return {name: np.asarray(value) for name, value in outputs.items()}


class KerasPredictor(_FunctionPredictor):
    """A Keras model of `task` through the task's serving functions, as it would be exported."""

    def __init__(self, task, model, config, calibration=None, source="in-memory model"):
        super().__init__(task.bind(config, calibration=calibration).serving_functions(model), source,
                         config_lib.to_dict(config), calibration)


class RunPredictor(KerasPredictor):
    """The trained model of a run directory (best.keras, else last.keras), its
    configuration and calibration."""

    def __init__(self, task, model_dir):
        from biomodels.runs import load_trained_model, run_config

        config = run_config(task, model_dir)
        super().__init__(task, load_trained_model(model_dir), config, config_lib.read_calibration(task, model_dir), model_dir)


class SavedModelPredictor(_FunctionPredictor):
    """The signatures of an exported SavedModel, with the training configuration and
    calibration of its export.json when there is one."""

    def __init__(self, path):
        import tensorflow as tf

        if not is_saved_model(path):
            raise InputError(path, "is not a SavedModel folder (no saved_model.pb)")
        self._loaded = tf.saved_model.load(path)  # its signature functions hold only weak references to it
        info_path = os.path.join(path, EXPORT_INFO)
        info = config_lib.read_json(info_path) if os.path.isfile(info_path) else {}
        #: the task export.json names, None without one
        self.task_name = info.get("task")
        super().__init__(dict(self._loaded.signatures), path, info.get("config"), info.get("calibration"))
