"""From clathrin-coated-pit tracks to the triage: each track's probability of being a
productive (auxilin-positive) pit from the served features or traces model, and the
review threshold that keeps a target recall of the validation split's positives (or a
given threshold). `outputs` writes the ranked lists."""

import dataclasses
import os

import numpy as np

from biomodels.errors import InputError
from biomodels.pipelines.track_files import Track
from biomodels.study_model import StudyModel, is_path
from biomodels.tasks.ccp import data
from biomodels.tasks.ccp.serving import served_model_kind, served_trace_channels


@dataclasses.dataclass(frozen=True)
class Triage:
    """ccp's answer for a list of tracks, in the order given.

    Attributes:
        probability: float64 [N], each track's probability of being a productive pit.
        review: bool [N], the tracks at or above the review threshold.
        threshold: the review threshold.
        basis: how the threshold was set (given, or the recall it keeps on validation).
    """

    probability: np.ndarray
    review: np.ndarray
    threshold: float
    basis: str


def triage(predictor, config, tracks, threshold):
    """The `Triage` of `tracks` (`Track`s) by `predictor` of a run trained with `config`;
    `threshold` is `review_threshold`'s (value, how it was set)."""
    threshold, basis = threshold
    probability = score_tracks(predictor, served_model_kind(predictor), tracks, config)
    return Triage(probability=probability, review=probability >= threshold, threshold=threshold, basis=basis)


def tracks_from_traces(traces):
    """`Track`s from arrays [frames, 2] (clathrin, auxilin) or [frames] (clathrin), or
    `Track`s as they are."""
    tracks = []
    for index, trace in enumerate(traces):
        if isinstance(trace, Track):
            tracks.append(trace)
            continue
        trace = np.asarray(trace, np.float64)
        trace = trace[:, np.newaxis] if trace.ndim == 1 else trace
        if trace.ndim != 2 or trace.shape[1] not in (1, 2) or not len(trace):
            raise InputError(f"trace {index}", f"expected [frames, 2] (clathrin, auxilin) or [frames], found {trace.shape}")
        auxilin = trace[:, 1] if trace.shape[1] == 2 else np.zeros(len(trace))
        tracks.append(Track(cell="given", track_id=str(index), clathrin=trace[:, 0], auxilin=auxilin))
    return tracks


def review_threshold(predictor, config, options):
    """(threshold, how it was set) from options["threshold"], else from the validation
    probabilities the model carries and options["target_recall"] (else the run's)."""
    from biomodels.ops.classification_metrics import threshold_for_recall

    if options["threshold"] is not None:
        return float(options["threshold"]), "given threshold"
    target = options["target_recall"] or config.target_recall
    positives = predictor.calibration.get("validation_positive_probabilities")
    if not positives:
        raise InputError(predictor.source, "carries no validation probabilities to set a threshold for a target recall "
                                      "(trained without a validation split, or served remotely); pass --threshold")
    if not 0 < target <= 1:
        raise InputError(str(target), "--target_recall must be in (0, 1]")
    confidence = config.triage_confidence
    return (threshold_for_recall(positives, target, confidence),
            f"recall {target:g} at {confidence:.0%} confidence from the validation split")


def score_tracks(predictor, kind, tracks, config, batch_size=256):
    """The model's probability for every track, in order. Traces go in batches of
    similar lengths, padded to the longest of each batch."""
    probabilities = np.zeros(len(tracks), np.float64)
    if kind == "features":
        features = np.stack([data.features(track, config) for track in tracks]).astype(np.float32)
        for start in range(0, len(tracks), batch_size):
            probabilities[start:start + batch_size] = predictor(features=features[start:start + batch_size])["probability"]
        return probabilities
    channels = served_trace_channels(predictor)
    lengths = np.array([track.frames for track in tracks], np.int32)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        batch = np.zeros((len(chosen), lengths[chosen].max(), len(channels)), np.float32)
        for row, index in enumerate(chosen):
            batch[row, :lengths[index]] = data.trace_array(tracks[index], channels)
        probabilities[chosen] = predictor(traces=batch, lengths=lengths[chosen])["probability"]
    return probabilities


class CCPModel(StudyModel):
    """A ccp model: clathrin-coated pits classified from their traces (or the study's
    features), and the tracks to review.

    `predict(tracks, **options)` takes the path of a cmeAnalysis .mat or a CSV track
    file (or a folder of them), or a list of traces: arrays [frames, 2] (clathrin,
    auxilin) or [frames] (clathrin), or `Track`s; and the options of
    `python -m biomodels.predict --task=ccp` (target_recall, threshold). It answers a
    `Triage`, in the order of the tracks given (of the files, in the order they are read).

    Example:
        >>> model = biomodels.load(ccp_run)
        >>> rng = np.random.default_rng(0)
        >>> traces = [rng.uniform(0, 5, (frames, 2)) for frames in (20, 35, 50)]
        >>> result = model.predict(traces, threshold=0.5)
        >>> result.probability.shape, result.review.dtype.name, result.threshold
        ((3,), 'bool', 0.5)
    """

    def predict(self, tracks, **options):
        config = self.config
        threshold = review_threshold(self.predictor, config, self.options(options))
        if is_path(tracks):
            path = os.fspath(tracks)
            tracks = data.gather_tracks(path, data.find_sources(path), served_model_kind(self.predictor))[0]
        else:
            tracks = tracks_from_traces(tracks)
        return triage(self.predictor, config, tracks, threshold)
