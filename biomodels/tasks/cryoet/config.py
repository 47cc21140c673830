"""cryoet's configuration, its presets and the class constants every module shares."""

import dataclasses

CLASS_NAMES = ("background", "microtubule", "ribosome", "double_membrane", "single_membrane", "carbon_edge")
NUM_CLASSES = len(CLASS_NAMES)
FEATURE_CLASSES = tuple(range(1, NUM_CLASSES))
IGNORE_LABEL = 255


@dataclasses.dataclass(frozen=True)
class CryoETConfig:
    base_filters: int = 8
    depth: int = 4
    dropout: float = 0.0
    tile_size: int = 128
    exclude_slices: int = 0
    class_weights: tuple[float, ...] = ()
    learning_rate: float = 3e-3
    lr_schedule: str = "cosine"
    batch_size: int = 8
    epochs: int = 10
    steps_per_epoch: int = 80
    augment: bool = True  # flips, quarter turns, gain and noise; the study trained without
    noise_augmentation: float = 0.1
    synthetic_tomograms: int = 16
    synthetic_shape: tuple[int, ...] = (24, 256, 256)


def presets():
    return {
        "quick": CryoETConfig(),
        "paper": CryoETConfig(
            base_filters=64, depth=5, dropout=0.5, tile_size=512, learning_rate=1e-3, lr_schedule="constant",
            batch_size=4, epochs=50, steps_per_epoch=0, augment=False, noise_augmentation=0.0,
        ),
    }


def size_multiple(config):
    """Image height and width must be multiples of this for the U-Net of `config`."""
    from biomodels.models import CryoETUNet

    return CryoETUNet.size_multiple_for(config.depth)
