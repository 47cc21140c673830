"""From a cryo-ET tomogram (or one slice) to its annotation: each slice standardised with
its whole tomogram's statistics and run whole or in a few large overlapping tiles through
the model's `standardised` signature, then the most probable class per voxel.
`outputs` writes the same results to MRC files, slice by slice."""

import dataclasses
import os

import numpy as np

from biomodels.errors import InputError
from biomodels.ops.tiling import plan_tiles, predict_tiled
from biomodels.study_model import StudyModel, is_path
from biomodels.tasks.cryoet.data import standardise, tomogram_moments

# Pixels in one tile of the default plan: the forward pass's peak resident memory grew by
# 2.2-2.6 KB a pixel for the paper preset and 256-305 bytes for the quick one (512² and
# 1024² slices, on CPU, 2026-11-30), so a tile needs up to about 3.5 GiB; a 1024×1024
# slice goes whole.
TILE_PIXELS = 1_500_000


@dataclasses.dataclass(frozen=True)
class Annotation:
    """cryoet's answer for a tomogram (Z, Y, X) or one slice (Y, X).

    Attributes:
        labels: int8 class of every voxel, the input's shape (0 background, 1
            microtubule, 2 ribosome, 3 double membrane, 4 single membrane, 5 carbon edge).
        probabilities: float32 class probabilities, the input's shape plus one axis of 6.
    """

    labels: np.ndarray
    probabilities: np.ndarray


def require_standardised(predictor):
    if "standardised" not in predictor.signatures:
        raise InputError(predictor.source, "has no `standardised` signature (exported before cryoet standardised "
                                           "by tomogram rather than by tile): export the run again")


def tomogram_statistics(slices, path):
    """(mean, deviation) of a tomogram given slice by slice; NaN or Inf voxels are an
    InputError naming `path`."""
    mean, std, not_finite = tomogram_moments(slices)
    if not_finite:
        raise InputError(path, f"contains {not_finite} NaN or Inf values")
    return mean, std


def annotate(predictor, tomogram, options, source="the array"):
    """The `Annotation` of a tomogram (anything giving its Z slices by index: an array
    (Z, Y, X), MrcSlices, ZarrSlices) or of one 2-D slice, held whole in memory."""
    require_standardised(predictor)
    volume = tomogram[np.newaxis] if np.ndim(tomogram) == 2 else tomogram
    mean, std = tomogram_statistics(volume, source)
    probabilities = np.stack([slice_probabilities(predictor, standardise(volume[z], mean, std), options)
                              for z in range(len(volume))])
    if np.ndim(tomogram) == 2:
        probabilities = probabilities[0]
    return Annotation(labels=np.argmax(probabilities, axis=-1).astype(np.int8), probabilities=probabilities)


def slice_probabilities(predictor, image, options):
    """[H, W, classes] probabilities of one slice standardised with its tomogram's mean
    and deviation, through the `standardised` signature: the whole slice when it holds at
    most TILE_PIXELS, else the fewest even tiles of at most that many (or square tiles
    of options["tile"]), overlapping by options["overlap"] pixels and blended.
    Standardisation does not depend on the tiles, so neither does the result, up to the
    network's view across tile edges."""
    overlap = options["overlap"]
    tile = options["tile"] or plan_tiles(image.shape, TILE_PIXELS, overlap)
    return predict_tiled(image[..., np.newaxis], lambda tiles: predictor("standardised", images=tiles)["probabilities"],
                         tile=tile, overlap=overlap, batch_size=options["batch_size"])


class CryoETModel(StudyModel):
    """A cryoet model: tomograms annotated slice by slice into six classes.

    `predict(data, **options)` takes a tomogram (Z, Y, X) or one slice (Y, X) as an
    array, or the path of an MRC tomogram, and the options of
    `python -m biomodels.predict --task=cryoet` (tile, overlap, batch_size; probabilities
    is for the files only: the result always holds them). It answers an `Annotation`.

    Example:
        >>> model = biomodels.load(cryoet_run)
        >>> result = model.predict(np.random.default_rng(0).normal(size=(2, 64, 64)))
        >>> result.labels.shape, result.labels.dtype.name, result.probabilities.shape
        ((2, 64, 64), 'int8', (2, 64, 64, 6))
        >>> bool(np.allclose(result.probabilities.sum(axis=-1), 1, atol=1e-4))
        True
    """

    def predict(self, data, **options):
        from biomodels.tasks.cryoet.data import open_slices

        source = os.fspath(data) if is_path(data) else "the array"
        tomogram = open_slices(source) if is_path(data) else np.asarray(data)
        if not is_path(data) and tomogram.ndim not in (2, 3):
            raise InputError(source, f"expected a tomogram (Z, Y, X) or a slice (Y, X), found shape {tomogram.shape}")
        return annotate(self.predictor, tomogram, self.options(options), source)
