"""One interface over every place a model can run: an in-memory Keras model, a training
run's directory, a local SavedModel, TF Serving over REST and over gRPC.

    predictor = open_predictor(task, "runs/cryoet/20261130-101500")   # or an export, or
    predictor = open_predictor(task, "http://host:8501/v1/models/cryoet")  # or grpc://host:8500
    predictor.signatures["serving_default"].inputs    # {"images": TensorInfo("float32", (None, None, None, 1))}
    outputs = predictor("serving_default", images=batch)    # {"probabilities": array, "labels": array}
    predictor.config, predictor.calibration                 # {} where the backend does not know them

Every backend answers with outputs under their signature names; each translates its own
wire format in one place. Task code sees only this interface.
"""

import os

from biomodels.errors import InputError
from biomodels.predictors.base import Predictor, Signature, TensorInfo
from biomodels.predictors.local import KerasPredictor, RunPredictor, SavedModelPredictor, is_saved_model
from biomodels.predictors.tf_serving import GrpcPredictor, RestPredictor

__all__ = ["Predictor", "Signature", "TensorInfo", "KerasPredictor", "RunPredictor", "SavedModelPredictor",
           "RestPredictor", "GrpcPredictor", "open_predictor", "is_saved_model"]


#: {(task name, model): Predictor} opened in this process
_OPENED = {}


def process_predictor(task, model):
    """The predictor of `model` for `task` in this process, opened on first use and kept
    (a cluster worker opens each model once; models never travel)."""
    key = (task.name, str(model))
    if key not in _OPENED:
        _OPENED[key] = open_predictor(task, str(model))
    return _OPENED[key]


def open_predictor(task, path):
    """The Predictor for a SavedModel directory, a training run's model_dir, or the
    address of a TF Serving server (http://host:8501/v1/models/NAME, grpc://host:8500;
    the task's name is the model's name when the address does not give one), or a
    published model the task knows by name or a model file of the study's own format
    (cellular: cellpose:cyto3, a Cellpose checkpoint)."""
    named = task.named_model(path)
    if named is not None:
        return KerasPredictor(task, *named, source=path)
    if path.startswith(("http://", "https://")):
        return RestPredictor(path, model=task.name)
    if path.startswith("grpc://"):
        return GrpcPredictor(path, model=task.name)
    if not os.path.isdir(path):
        raise InputError(path, "no such directory: give a model_dir of biomodels.train or an exported SavedModel")
    if is_saved_model(path):
        return SavedModelPredictor(path)
    return RunPredictor(task, path)
