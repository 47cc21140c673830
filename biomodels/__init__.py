"""biomodels: five published bioimage deep-learning studies, from raw microscope files
to models served by TensorFlow Serving, in Keras 3 / TensorFlow.

    import biomodels
    model = biomodels.load("runs/cellular/20261203-101500")   # a run, an export, a server
    result = model.predict(image, diameter=30)                 # masks, flows, cellprob, diameter
    run = biomodels.train("cryoet", epochs=2)                  # the same as python -m biomodels.train

Importing the package is cheap; TensorFlow is imported by the modules that need it.
`biomodels.train` is both the command module (`python -m biomodels.train`) and callable.
"""

from biomodels.study import load  # cheap: no TensorFlow
from biomodels.version import __version__

__all__ = ["load", "train", "__version__"]


def __getattr__(name):
    # `biomodels.train(...)` without importing the command module first
    if name == "train":
        import importlib

        return importlib.import_module("biomodels.train")
    raise AttributeError(f"module 'biomodels' has no attribute {name!r}")
