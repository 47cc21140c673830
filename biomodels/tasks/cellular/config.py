"""cellular's configuration, its presets and their checks, and the constants its modules share."""

import dataclasses
import re
import typing

from biomodels.errors import ConfigError

AP_THRESHOLDS = (0.5, 0.75, 0.9)
# Zero pixels (normalised: the 1st percentile, background) added around a whole image
# before the network, as Cellpose's run_net pads: without them the network missed cells
# cut by the image's edge (10 of 180 on a 512×512 synthetic image, benchmarks/cellular_predict.py)
IMAGE_BORDER = 8
# pixels the network sees in one call when --tile is not given: the fewest even tiles of
# the bordered image holding at most this many (ops.tiling.plan_tiles), as many a batch
# as fit it. CPnet of the paper's widths (32-256) took 1.0-1.5 KB a pixel on CPU
# (peak RSS of one call on 528² to 2064² inputs, 2026-12-04), so a call stays near the
# 3.3 GB of the eight 528² tiles it ran before; a 2048² image goes in two tiles, not 25,
# and the network's time on it fell from 16.1 s to about 7 s (benchmarks/cellular_predict.py)
TILE_PIXELS = 2_300_000


@dataclasses.dataclass(frozen=True)
class CellularConfig:
    nbase: tuple[int, ...] = (16, 32, 64, 128)
    diameter_mean: float = 30.0
    channels: tuple[int, ...] = (0, 1)
    # Cellpose's channels=[0, 0]: one gray channel (the mean of the image's channels) and a
    # channel of zeros, instead of the `channels` picked
    gray: bool = False
    skip_classes: tuple[str, ...] = ()
    val_pattern: str = ""
    test_pattern: str = ""
    min_masks: int = 1
    crop_size: int = 128
    scale_range: tuple[float, ...] = (0.75, 1.25)
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    warmup_epochs: int = 1
    # the last epochs over which the rate halves ten times (0: never; none: as Cellpose's train_seg)
    final_halvings_epochs: typing.Optional[int] = 0
    weight_decay: float = 1e-5
    batch_size: int = 8
    epochs: int = 8
    steps_per_epoch: int = 25
    flow_threshold: float = 0.4
    cellprob_threshold: float = 0.0
    min_size: int = 15
    synthetic_images: int = 40
    synthetic_shape: tuple[int, ...] = (256, 256)


def presets():
    return {
        "quick": CellularConfig(),
        "paper": CellularConfig(
            nbase=(32, 64, 128, 256), gray=True, min_masks=5, crop_size=224, optimizer="sgd", learning_rate=0.2,
            warmup_epochs=10, final_halvings_epochs=None, batch_size=8, epochs=500, steps_per_epoch=0,
        ),
    }


def size_multiple(config):
    """Image height and width must be multiples of this for the CPnet of `config`."""
    from biomodels.models import CellposeNet

    return CellposeNet.size_multiple_for(config.nbase)


def check_config(config):
    """Raise a ConfigError for settings that cannot work together."""
    from biomodels.config import check_choice

    check_choice("optimizer", config.optimizer, ("sgd", "adamw"))
    if config.crop_size % size_multiple(config):
        raise ConfigError(f"--set crop_size={config.crop_size}: must be a multiple of {size_multiple(config)}")
    if len(config.scale_range) != 2 or not 0 < config.scale_range[0] <= config.scale_range[1]:
        raise ConfigError(f"--set scale_range={config.scale_range}: give two factors, low,high, with 0 < low <= high")
    if not 1 <= len(config.channels) <= 2:
        raise ConfigError(f"--set channels={config.channels}: give one or two channel indices (cytoplasm, nucleus)")
    for name in ("val_pattern", "test_pattern"):
        try:
            re.compile(getattr(config, name))
        except re.error as error:
            raise ConfigError(f"--set {name}={getattr(config, name)!r} is not a regular expression ({error})") from None


def mask_thresholds(config):
    """The keyword arguments of masks_from_flows that the configuration sets."""
    return {"flow_threshold": config.flow_threshold, "cellprob_threshold": config.cellprob_threshold,
            "min_size": config.min_size}
