"""lch's configuration, its presets and the constants its modules share."""

import dataclasses

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
NORMALISATIONS = ("percentile", "none")
STUDY_CROP_SIZE = 256
EFFICIENCIES = {"high": 1, "low": 0}
# date_celltype_s<site>_t<time>_p<position>_f<frame>, as the synthetic crops are named
DEFAULT_PATTERN = r"(?P<date>\d+)_(?P<cell_type>[A-Za-z0-9-]+)_s(?P<site>\d+)_t(?P<time>\d+)_p(?P<position>\d+)_f(?P<frame>\d+)"


@dataclasses.dataclass(frozen=True)
class LCHConfig:
    image_size: int = 64
    latent_dim: int = 56
    filters: tuple[int, ...] = (32, 64, 128, 256)
    discriminator_units: tuple[int, ...] = (256, 256, 128)
    adversarial_weight: float = 1.0
    learning_rate: float = 1e-3
    beta_1: float = 0.5
    batch_size: int = 32
    epochs: int = 40
    steps_per_epoch: int = 0
    augment: bool = True
    intensity_normalisation: str = "percentile"
    filename_pattern: str = DEFAULT_PATTERN
    cell_type_field: str = "cell_type"
    efficiency_csv: str = ""
    classifier_l2: float = 0.0  # 0: chosen by leave-one-cell-line-out on the training split
    insilico_span: float = 3.0
    synthetic_cells: int = 960
    synthetic_cell_lines: int = 8


def presets():
    return {
        "quick": LCHConfig(),
        # the study: 256×256 crops, six convolutions 64-1024, discriminator 1024-1024-512,
        # Adam 2e-4 (beta 0.5), batch 50, 150 epochs, no augmentation, crops as 8-bit / 255
        "paper": LCHConfig(image_size=256, filters=(64, 128, 256, 512, 1024, 1024),
                           discriminator_units=(1024, 1024, 512), learning_rate=2e-4, batch_size=50, epochs=150,
                           augment=False, intensity_normalisation="none"),
    }


def latent_columns(latent_dim):
    """The names of a code's `latent_dim` components: z0, z1, …"""
    return [f"z{index}" for index in range(latent_dim)]
