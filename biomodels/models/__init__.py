"""Pure Keras architectures, layers and losses: no file I/O, importable in any Keras code."""

from biomodels.models.losses import WeightedSparseCategoricalCrossentropy
from biomodels.models.unet import CryoETUNet

__all__ = ["CryoETUNet", "WeightedSparseCategoricalCrossentropy"]
