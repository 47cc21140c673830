"""Pure Keras architectures, layers and losses: no file I/O, importable in any Keras code."""

from biomodels.models.aae import AdversarialAutoencoder
from biomodels.models.cellpose import CellposeNet
from biomodels.models.deepis import DeepISNet
from biomodels.models.losses import BalancedBinaryCrossentropy, CellposeLoss, WeightedSparseCategoricalCrossentropy
from biomodels.models.traces import TraceFeatureNet, TraceNet
from biomodels.models.unet import CryoETUNet

__all__ = ["AdversarialAutoencoder", "BalancedBinaryCrossentropy", "CellposeLoss", "CellposeNet", "CryoETUNet", "DeepISNet", "TraceFeatureNet", "TraceNet", "WeightedSparseCategoricalCrossentropy"]
