"""ccp's configuration, its presets and the constants its modules share."""

import dataclasses

CHANNELS = ("clathrin", "auxilin")
MODELS = ("traces", "features")


@dataclasses.dataclass(frozen=True)
class CCPConfig:
    model: str = "traces"
    # labels by the auxilin rule
    aux_pval_cutoff: float = 0.05
    aux_consecutive: int = 3
    aux_short_track_frames: int = 0
    frame_interval_s: float = 1.0
    group_split: bool = False
    class_weighting: str = "balanced"
    # features model
    hidden_units: tuple[int, ...] = (10, 10)
    activation: str = "tanh"
    # traces model: the traces it reads. Clathrin alone by default: labels given by the
    # auxilin rule would otherwise be re-learnt from the auxilin trace they are computed
    # from, and clathrin-only movies could not be scored; ("clathrin", "auxilin") is
    # allowed only when every training label was given by the user
    trace_channels: tuple[str, ...] = ("clathrin",)
    filters: int = 32
    kernel_size: int = 5
    conv_layers: int = 2
    gru_units: int = 32
    dense_units: int = 32
    dropout: float = 0.1
    intensity_augmentation: float = 0.1
    # training
    learning_rate: float = 3e-3
    lr_schedule: str = "cosine"
    batch_size: int = 32
    epochs: int = 12
    steps_per_epoch: int = 0
    target_recall: float = 0.95
    triage_confidence: float = 0.9
    synthetic_cells: int = 6
    synthetic_tracks_per_cell: int = 600


def presets():
    return {
        "quick": CCPConfig(),
        # the study: its dense [10, 10] tanh network on the 11 features, Adam, batch 32, 20 epochs,
        # an unweighted loss
        "paper": CCPConfig(model="features", class_weighting="none", learning_rate=1e-3, lr_schedule="constant",
                           epochs=20),
    }
