"""From a refractive-index tomogram to the two cells and their synapse: the signed
distance predicted whole or in large overlapping tiles (padded with the medium's index),
thresholded into CAR-T and target masks, the synapse where the masks dilated by 2 voxels
overlap, and a report of volumes and synapse size. `outputs` writes these results to
TIFF and JSON files; `metrics` scores the distance."""

import dataclasses
import os

import numpy as np

from biomodels.errors import ConfigError, InputError
from biomodels.ops import distance as distance_ops
from biomodels.study_model import StudyModel, is_path
from biomodels.tasks.base import comma_numbers

# Voxels in one tile of the default plan: the forward pass's peak resident memory grew by
# 515-603 bytes a voxel for both presets (quick at 64×128×128 and 128×256×256, paper at
# 32×128×128 and 64×128×128, on CPU, 2026-11-30), so a tile needs about 3.4 GiB.
TILE_VOXELS = 6_000_000
TILE_OVERLAP = 32  # voxels per axis between the default plan's tiles


@dataclasses.dataclass(frozen=True)
class SynapseAnalysis:
    """deepis's answer for one RI volume (Z, Y, X).

    Attributes:
        distance: float32 signed distance, the volume's shape (CAR-T > 0, target < 0).
        labels: uint8 cells, the volume's shape (0 medium, 1 CAR-T, 2 target).
        synapse: bool, where the two cells' masks dilated by 2 voxels overlap.
        report: voxel counts of the cells and the synapse, and with a voxel size, their
            volumes in µm³ and the synapse's area in µm².
    """

    distance: np.ndarray
    labels: np.ndarray
    synapse: np.ndarray
    report: dict


def parse_voxel_size(text):
    """(x, y, z) in µm from 'x,y,z' or one number for all three; None for None."""
    if not text:
        return None
    values = comma_numbers(text, float)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) <= 0:
        raise ConfigError(f"--voxel_size={text}: expected x,y,z in µm (or one number), all positive")
    return values


def parse_tile(text):
    """(z, y, x) tile size from 'z,y,x'; None for None."""
    if not text:
        return None
    values = comma_numbers(text, int)
    if len(values) != 3 or min(values) < 4:
        raise ConfigError(f"--tile={text}: expected z,y,x in voxels, each at least 4")
    return values


def analyse_volume(predictor, config, volume, options, voxel_size=None):
    """The `SynapseAnalysis` of an RI volume (Z, Y, X) by `predictor`, of a run trained
    with `config`; options["voxel_size"] (x, y, z in µm), else `voxel_size` (the file's),
    puts the report in µm³ and µm²."""
    run = lambda tiles: predictor("serving_default", volumes=tiles)["distance"]  # noqa: E731
    distance = predict_distance(run, volume, config.medium_index, options["tile"])
    return analyze_synapse(distance, options["voxel_size"] or voxel_size)


def predict_distance(run, volume, medium_index, tile=None):
    """The signed distance of a whole RI volume (Z, Y, X) through `run` (volumes
    [N, z, y, x, 1] -> distance [N, z, y, x], the model's `serving_default`). By default
    the volume goes whole when it holds at most TILE_VOXELS, else in the fewest even
    tiles of at most that many, overlapping by TILE_OVERLAP voxels and blended; a `tile`
    (z, y, x) given is blended with a quarter overlap. A volume smaller than a tile is
    padded with the medium's index, as training crops are."""
    from biomodels.ops.tiling import plan_tiles, predict_tiled

    if tile is None:
        tile, overlap = plan_tiles(volume.shape, TILE_VOXELS, TILE_OVERLAP), TILE_OVERLAP
    else:
        overlap = tuple(n // 4 for n in tile)
    return predict_tiled(volume.astype(np.float32)[..., None], lambda tiles: np.asarray(run(tiles))[..., None],
                         tile=tile, overlap=overlap, batch_size=1, pad_value=float(medium_index))[..., 0]


def analyze_synapse(distance, voxel_size=None):
    """The `SynapseAnalysis` of a signed distance volume (Z, Y, X); `voxel_size` (x, y, z)
    in µm puts the report in µm³ and µm²."""
    labels = distance_ops.labels_from_distance(distance)
    synapse = distance_ops.synapse_mask(labels)
    car_t_surface = distance_ops.surface(labels == 1)
    report = {
        "car_t_voxels": int((labels == 1).sum()), "target_voxels": int((labels == 2).sum()),
        "synapse_voxels": int(synapse.sum()), "synapse_surface_voxels": int((synapse & car_t_surface).sum()),
        "car_t_surface_voxels": int(car_t_surface.sum()),
    }
    if voxel_size is not None:
        voxel_volume = float(np.prod(voxel_size))
        face = voxel_volume ** (2 / 3)  # area of one surface voxel, for roughly isotropic voxels
        report.update({
            "voxel_size_um": [float(v) for v in voxel_size],
            "car_t_volume_um3": report["car_t_voxels"] * voxel_volume,
            "target_volume_um3": report["target_voxels"] * voxel_volume,
            "synapse_volume_um3": report["synapse_voxels"] * voxel_volume,
            "synapse_area_um2": report["synapse_surface_voxels"] * face,
        })
    return SynapseAnalysis(distance=np.asarray(distance, np.float32), labels=labels, synapse=synapse, report=report)


class DeepISModel(StudyModel):
    """A deepis model: CAR-T and target cells, and their synapse, in RI tomograms.

    `predict(volume, **options)` takes an RI volume (Z, Y, X) as an array, or the path
    of a TIFF stack or a DeepIS .mat file, and the options of
    `python -m biomodels.predict --task=deepis` (voxel_size, tile). It answers a
    `SynapseAnalysis`.

    Example:
        >>> model = biomodels.load(deepis_run)
        >>> volume = np.full((16, 32, 32), 1.337, np.float32)     # medium only
        >>> result = model.predict(volume, voxel_size="0.2")
        >>> result.distance.shape, result.labels.dtype.name, result.report["voxel_size_um"]
        ((16, 32, 32), 'uint8', [0.2, 0.2, 0.2])
    """

    def predict(self, volume, **options):
        from biomodels.pipelines.readers import require_finite
        from biomodels.tasks.deepis.data import read_volume

        if is_path(volume):
            volume, voxel_size = read_volume(os.fspath(volume))
        else:
            volume, voxel_size = np.asarray(volume, np.float32), None
            require_finite("the volume", volume)
        if volume.ndim != 3:
            raise InputError("the volume", f"expected an RI volume (Z, Y, X), found shape {volume.shape}")
        return analyse_volume(self.predictor, self.config, volume, self.options(options), voxel_size)
