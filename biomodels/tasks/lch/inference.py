"""From single-cell crops to the adversarial autoencoder's answers: each crop's latent
code and, where the run fitted one, the classifier's probability of high metastatic
efficiency; codes decoded back into cells; interpolations between two cells; and
in-silico cells, a code moved along the classifier's direction. `outputs` writes
these results as a table, montages and GIFs."""

import dataclasses
import os

import numpy as np

from biomodels.errors import InputError
from biomodels.study_model import StudyModel, is_path
from biomodels.tasks.lch.config import STUDY_CROP_SIZE
from biomodels.tasks.lch.data import find_crops, fit_crop, load_crops


@dataclasses.dataclass(frozen=True)
class LatentCodes:
    """lch's answer for a batch of crops.

    Attributes:
        codes: float32 [N, latent_dim], each crop's latent code (its prior is N(0, I)).
        probability_high: float32 [N], the latent classifier's probability of high
            metastatic efficiency; None when the run fitted no classifier.
    """

    codes: np.ndarray
    probability_high: np.ndarray


def crop_size_of(predictor, config):
    """The crop size the model takes: its run's; a served model of unknown size gets the
    study's crop size and resizes in its graph."""
    return config.image_size if predictor.config else STUDY_CROP_SIZE


def crops_at(images, size):
    """[N, size, size, 1] float32 crops in [0, 1] from gray crops [N, H, W] or [N, H, W, 1]
    (or one [H, W]) in [0, 1]: centred, square, resized; the rest of the preprocessing
    happens in the model's graph."""
    images = np.asarray(images, np.float32)
    if images.ndim == 2 or (images.ndim == 3 and images.shape[-1] == 1):
        images = images[np.newaxis]
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise InputError("the crops", f"expected gray crops [N, H, W] in [0, 1], found shape {images.shape}")
    return np.stack([fit_crop(image, size) for image in images])


def run_batched(predictor, signature, input_name, array, batch_size, output):
    """`output` of `signature` for `array` given in batches as `input_name`."""
    return np.concatenate([predictor(signature, **{input_name: array[start:start + batch_size]})[output]
                           for start in range(0, len(array), batch_size)])


def embed(predictor, crops, batch_size):
    """The `LatentCodes` of crops [N, size, size, 1] in [0, 1]."""
    codes = run_batched(predictor, "encode", "images", crops, batch_size, "latent")
    probabilities = None
    if "classify" in predictor.signatures:
        probabilities = run_batched(predictor, "classify", "images", crops, batch_size, "probability_high")
    return LatentCodes(codes=codes, probability_high=probabilities)


def decode(predictor, codes):
    """Images [N, size, size, 1] in [0, 1] decoded from codes [N, latent_dim]."""
    return predictor("decode", latent=np.asarray(codes, np.float32))["images"]


def interpolate(predictor, crops, steps):
    """Images decoded from `steps` codes evenly spaced on the line from the code of
    crops[0] to that of crops[1] (crops [2, size, size, 1] in [0, 1])."""
    codes = predictor("encode", images=crops)["latent"]
    weights = np.linspace(0, 1, steps)[:, None]
    return decode(predictor, (1 - weights) * codes[0] + weights * codes[1])


def classifier_of(predictor):
    """The latent classifier the run fitted (its calibration); an InputError without one."""
    from biomodels.ops.latent_classifier import LinearClassifier

    if not predictor.calibration.get("classifier"):
        raise InputError(predictor.source, "carries no latent classifier (calibration): in-silico cells need the run "
                                           "directory or the exported SavedModel of a run with a validation split")
    return LinearClassifier.from_dict(predictor.calibration["classifier"])


def along_direction(code, direction, targets):
    """Codes [len(targets), latent_dim]: `code` with its component along the unit
    `direction` set to each of `targets`."""
    return (code[None, :] + (targets - code @ direction)[:, None] * direction[None, :]).astype(np.float32)


class LCHModel(StudyModel):
    """An lch model: the adversarial autoencoder of Live Cell Histology and, where the
    run fitted one, the latent classifier of metastatic efficiency.

    `predict(crops, batch_size=32)` takes gray single-cell crops in [0, 1] ([N, H, W],
    [N, H, W, 1] or one [H, W]) or the path of a crop or a folder of them, and answers
    `LatentCodes`. `decode(codes)` gives the cells of codes, `interpolate(first,
    second, steps=9)` the cells between two crops' codes, `classify(crops)` the
    classifier's probability of high efficiency.

    Example:
        >>> model = biomodels.load(lch_run)
        >>> crops = np.random.default_rng(0).uniform(0, 1, (3, 64, 64))
        >>> codes = model.predict(crops).codes
        >>> codes.shape == (3, model.config.latent_dim)
        True
        >>> model.decode(codes).shape == (3, model.config.image_size, model.config.image_size, 1)
        True
        >>> model.interpolate(crops[0], crops[1], steps=5).shape[0]
        5
    """

    def predict(self, crops, **options):
        return embed(self.predictor, self.crops(crops), self.options(options)["batch_size"])

    def decode(self, codes):
        """Images [N, size, size, 1] in [0, 1] decoded from codes [N, latent_dim]."""
        return decode(self.predictor, codes)

    def interpolate(self, first, second, steps=9):
        """Images [steps, size, size, 1] decoded from codes evenly spaced between the codes
        of two crops (arrays [H, W] or paths)."""
        return interpolate(self.predictor, np.concatenate([self.crops(first), self.crops(second)]), steps)

    def classify(self, crops):
        """The latent classifier's probability of high metastatic efficiency [N] of crops."""
        if "classify" not in self.signatures:
            raise InputError(self.predictor.source, "has no `classify` signature: the run fitted no latent classifier "
                                                    "(it needs a validation split with two efficiency classes)")
        return self.predictor("classify", images=self.crops(crops))["probability_high"]

    def crops(self, crops):
        """[N, size, size, 1] crops for the model from arrays or a crop file or folder."""
        size = crop_size_of(self.predictor, self.config)
        if is_path(crops):
            paths, _ = find_crops(os.fspath(crops), self.config, require_table=False)
            return load_crops(paths, size)
        return crops_at(crops, size)
