"""The Predictor interface: named signatures with typed inputs and outputs, called with
numpy arrays, answering {output name: numpy array}."""

import abc
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A signature's input or output: dtype name ("float32") and shape (None: any size)."""

    dtype: str
    shape: tuple


@dataclasses.dataclass(frozen=True)
class Signature:
    inputs: dict   # {name: TensorInfo}
    outputs: dict  # {name: TensorInfo}


class Predictor(abc.ABC):
    """Named signatures of one model, wherever it runs."""

    #: whether the model runs elsewhere, so that what it answers crosses a network
    remote = False

    def __init__(self, source, config=None, calibration=None):
        #: what the predictor was opened from (a path or an address), for messages
        self.source = str(source)
        #: the training configuration as a dict, when the backend records it, else {}
        self.config = config or {}
        #: what the task fitted after training (Task.calibrate), when recorded, else {}
        self.calibration = calibration or {}

    @property
    @abc.abstractmethod
    def signatures(self):
        """{signature name: Signature}."""

    def __call__(self, signature="serving_default", **inputs):
        """{output name: numpy array} of `signature` for {input name: array}."""
        return self._predict(signature, {name: np.asarray(value) for name, value in inputs.items()})

    @abc.abstractmethod
    def _predict(self, signature, inputs):
        """{output name: numpy array} for inputs already made numpy arrays."""


def signature_of(function):
    """The Signature of a concrete function (a tf.function's with an input signature,
    or a loaded SavedModel's signature function)."""
    function = function.get_concrete_function() if hasattr(function, "get_concrete_function") else function
    positional, keywords = function.structured_input_signature
    specs = {spec.name: spec for spec in positional} | dict(keywords)
    return Signature(inputs={name: _info(spec) for name, spec in specs.items()},
                     outputs={name: _info(spec) for name, spec in function.structured_outputs.items()})


def _info(spec):
    return TensorInfo(spec.dtype.name, tuple(spec.shape.as_list()) if spec.shape.rank is not None else None)
