"""biomodels: five published bioimage deep-learning studies, from raw microscope files
to models served by TensorFlow Serving, in Keras 3 / TensorFlow.

Importing the package is cheap; TensorFlow is imported by the modules that need it.
"""

__version__ = "0.1.0"
