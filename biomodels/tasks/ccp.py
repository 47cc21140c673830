"""ccp: is a clathrin-coated-pit track auxilin-positive? A classifier that ranks tracks
so that people review the top of the list instead of every track.

Raw data: cmeAnalysis output (a folder of cells, `Cell*/…/ProcessedTracks.mat` as MATLAB
v5, or `…/lifetimeData.mat` as MATLAB v7.3) or CSV files with one row per track (see
biomodels.pipelines.tracks). Labels come from a `label` column when there is one, else
from the auxilin rule: three consecutive frames with an auxilin detection p-value of at
most 0.05, the run starting in the second half of the track (thresholds configurable).

Models (`--set model=`): `traces` (default) reads both raw channels, any length, through
masked 1-D convolutions and a bidirectional GRU; `features` is the study's dense net on
11 clathrin features. Both standardise their inputs inside the model with the training
split's statistics from dataset.json. The split is 60/20/20, stratified by label and
seeded (`--set group_split=true` keeps whole cells out instead). Positive and negative
tracks weigh the same in the loss (`class_weighting=balanced`), so probabilities are on
a balanced scale, and 0.5 is the balanced decision threshold.

After training, the validation split's probabilities are kept (calibration.json, and in
the export) to set the triage threshold that keeps a chosen recall; `predict` writes
triage.csv ranked by probability with a `review` flag, a per-cell summary, and a PNG of
example traces from the top, the borderline and the bottom of the list.
"""

import dataclasses
import glob
import json
import logging
import os

import numpy as np

from biomodels import config as config_lib
from biomodels.errors import ConfigError, InputError
from biomodels.ops.tracks import FEATURE_NAMES, NUM_FEATURES, auxilin_positive, track_features
from biomodels.pipelines import tracks as track_io
from biomodels.tasks.base import Source, Task

CHANNELS = ("clathrin", "auxilin")
MODELS = ("traces", "features")
BUCKET_BOUNDARIES = (16, 32, 64, 128)
PREDICT_BATCH = 256
log = logging.getLogger("biomodels")


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
    # traces model
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


class CCPTask(Task):
    name = "ccp"
    summary = "clathrin-coated-pit classification from clathrin and auxilin traces, with a triage list"
    Config = CCPConfig
    checkpoint_monitor = ("val_pr_auc", "max")
    default_split = (0.6, 0.2, 0.2)
    data_fields = ("aux_pval_cutoff", "aux_consecutive", "aux_short_track_frames", "frame_interval_s",
                   "group_split", "synthetic_cells", "synthetic_tracks_per_cell")
    # requests are small; pad tracks of different lengths into one batch
    serving_batching = {"max_batch_size": 256, "batch_timeout_micros": 1000, "max_enqueued_batches": 64,
                        "num_batch_threads": 2, "pad_variable_length_inputs": True}

    @classmethod
    def presets(cls):
        return {
            "quick": CCPConfig(),
            # the study: its dense [10, 10] tanh network on the 11 features, Adam, batch 32, 20 epochs
            "paper": CCPConfig(model="features", learning_rate=1e-3, lr_schedule="constant", epochs=20),
        }

    # -- raw data -------------------------------------------------------------
    def find_sources(self, input_path, config):
        if not os.path.exists(input_path):
            raise InputError(input_path, "no such file or directory")
        if os.path.isfile(input_path):
            paths, root = [input_path], os.path.dirname(os.path.abspath(input_path))
        else:
            paths, root = _track_files(input_path), os.path.abspath(input_path)
            if not paths:
                raise InputError(input_path, "no track files: expected Cell*/…/ProcessedTracks.mat, …/lifetimeData.mat or *.csv")
        sources = []
        for path in paths:
            if path.lower().endswith(".csv"):
                sources += [Source(name=f"{_relative(path, root)}:{cell}", group=cell, paths=(path,))
                            for cell in track_io.csv_cells(path)]
            elif path.lower().endswith(".mat"):
                cell = _cell_name(path, root)
                sources.append(Source(name=cell, group=cell, paths=(path,)))
            else:
                raise InputError(path, "expected a .mat file of cmeAnalysis or a .csv of tracks")
        return sources

    def read_tracks(self, source):
        """(tracks, {reason: count} left out) of one source."""
        path = source.paths[0]
        if path.lower().endswith(".csv"):
            return track_io.read_track_csv(path, cell=source.group)
        if track_io.is_hdf5(path):
            return track_io.read_lifetime_data(path, source.group)
        return track_io.read_processed_tracks(path, source.group)

    def read_source(self, source, config):
        tracks, skipped = self.read_tracks(source)
        examples = []
        for track in tracks:
            label = self.label(track, config)
            if label is None:
                raise InputError(source.paths[0], f"track {track.track_id} of {source.group} has no label and no auxilin "
                                                  "p-values (pval_Ar, auxilin_pval_*) to label it by the auxilin rule")
            examples.append({"traces": trace_array(track), "features": self.features(track, config),
                             "label": np.int64(label)})
        if not examples:
            raise InputError(source.paths[0], f"no usable tracks for {source.group} (left out: {skipped or 'none'})")
        positives = int(sum(example["label"] for example in examples))
        info = {"tracks": len(examples), "positives": positives, "skipped": skipped}
        return info, examples

    def label(self, track, config):
        """The track's given label, else the auxilin rule's answer, else None."""
        if track.label is not None:
            return int(track.label)
        if track.auxilin_pval is None:
            return None
        return int(auxilin_positive(track.auxilin_pval, config.aux_pval_cutoff, config.aux_consecutive,
                                    config.aux_short_track_frames))

    def features(self, track, config):
        """The 11 features: as given (CSV feature columns), else computed from the track."""
        if track.features is not None:
            return np.asarray(track.features, np.float32)
        return track_features(
            track.clathrin, track.background, track.positions, track.lifetime_s,
            track.frame_interval_s or config.frame_interval_s, track.start_buffer, track.end_buffer,
            track.total_displacement, track.msd,
        )

    def write_synthetic(self, directory, num_examples, seed, config):
        from biomodels.pipelines.synthetic import ccp as synthetic

        synthetic.write_dataset(directory, num_examples, seed, config.synthetic_tracks_per_cell)

    def default_synthetic_examples(self, config):
        return config.synthetic_cells

    def split_by_example(self, config):
        return not config.group_split

    def stratum(self, example):
        return int(example["label"])

    def statistics(self, examples):
        count, positives, without_traces = 0, 0, 0
        features, frames, lengths = [], [], []
        for example in examples:
            count += 1
            positives += int(example["label"])
            features.append(example["features"])
            if len(example["traces"]):
                frames.append(example["traces"])
                lengths.append(len(example["traces"]))
            else:
                without_traces += 1
        features = np.asarray(features, np.float64)
        frames = np.concatenate(frames) if frames else np.zeros((0, len(CHANNELS)))
        return {
            "tracks": count, "positives": positives, "positive_fraction": positives / max(1, count),
            "feature_names": list(FEATURE_NAMES),
            "feature_mean": features.mean(axis=0).tolist(), "feature_variance": _safe_variance(features.var(axis=0)),
            "channel_names": list(CHANNELS),
            "channel_mean": frames.mean(axis=0).tolist() if len(frames) else [0.0] * len(CHANNELS),
            "channel_variance": _safe_variance(frames.var(axis=0)) if len(frames) else [1.0] * len(CHANNELS),
            "tracks_without_traces": without_traces,
            "frames_median": float(np.median(lengths)) if lengths else 0.0, "frames_max": int(max(lengths, default=0)),
        }

    # -- model ----------------------------------------------------------------
    def build_model(self, config, manifest):
        from biomodels.models import TraceFeatureNet, TraceNet

        config_lib.check_choice("model", config.model, MODELS)
        stats = manifest["statistics"]
        if config.model == "features":
            return TraceFeatureNet(stats["feature_mean"], stats["feature_variance"], config.hidden_units, config.activation)
        if stats["tracks_without_traces"]:
            raise ConfigError(f"{stats['tracks_without_traces']} training tracks have features but no traces; "
                              "train the features model (--set model=features) or give trace columns")
        return TraceNet(stats["channel_mean"], stats["channel_variance"], config.filters, config.kernel_size,
                        config.conv_layers, config.gru_units, config.dense_units, config.dropout)

    def class_weights(self, config, manifest):
        """(positive, negative) loss weights: balanced makes both classes weigh the same."""
        config_lib.check_choice("class_weighting", config.class_weighting, ("balanced", "none"))
        fraction = manifest["statistics"]["positive_fraction"]
        if config.class_weighting == "none" or fraction in (0.0, 1.0):
            return 1.0, 1.0
        return 0.5 / fraction, 0.5 / (1.0 - fraction)

    def compile_arguments(self, config, manifest, steps_per_epoch):
        import keras

        from biomodels.models import BalancedBinaryCrossentropy

        learning_rate = config.learning_rate
        if config.lr_schedule == "cosine":
            learning_rate = keras.optimizers.schedules.CosineDecay(
                config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.05)
        positive_weight, negative_weight = self.class_weights(config, manifest)
        return {
            "loss": BalancedBinaryCrossentropy(positive_weight, negative_weight),
            "optimizer": keras.optimizers.Adam(learning_rate),
            "metrics": [keras.metrics.AUC(name="auc"), keras.metrics.AUC(curve="PR", name="pr_auc")],
        }

    def preprocess(self, inputs, config=None):
        """Cast to float32 and set non-finite values (NaN padding) to zero; the models
        standardise their inputs themselves with the training statistics."""
        import tensorflow as tf

        inputs = tf.cast(inputs, tf.float32)
        return tf.where(tf.math.is_finite(inputs), inputs, tf.zeros_like(inputs))

    def augment(self, example, seed, config):
        import tensorflow as tf

        if config.model != "traces" or not config.intensity_augmentation:
            return example
        spread = config.intensity_augmentation
        gains = tf.random.stateless_uniform([1, len(CHANNELS)], seed, 1.0 - spread, 1.0 + spread)
        return {**example, "traces": example["traces"] * gains}

    def model_io(self, example, config):
        import tensorflow as tf

        label = tf.reshape(tf.cast(example["label"], tf.float32), [1])
        if config.model == "features":
            return {"features": self.preprocess(example["features"], config)}, label
        traces = self.preprocess(example["traces"], config)
        return {"traces": traces, "lengths": tf.shape(traces)[0]}, label

    def batch(self, data, batch_size, training):
        if "lengths" not in data.element_spec[0]:
            return data.batch(batch_size, drop_remainder=training)
        if not training:
            return data.padded_batch(batch_size)
        # training batches of similar lengths: less padding to compute over
        return data.bucket_by_sequence_length(
            lambda inputs, label: inputs["lengths"], bucket_boundaries=list(BUCKET_BOUNDARIES),
            bucket_batch_sizes=[batch_size] * (len(BUCKET_BOUNDARIES) + 1), drop_remainder=True,
        )

    # -- results --------------------------------------------------------------
    def calibrate(self, model, dataset, manifest, config):
        """The validation split's probabilities, positives and negatives apart, from
        which any target recall's threshold is set."""
        labels, probabilities = _predict_dataset(model, dataset)
        return {
            "validation_positive_probabilities": _rounded(np.sort(probabilities[labels == 1])),
            "validation_negative_probabilities": _rounded(np.sort(probabilities[labels == 0])),
        }

    def evaluate(self, model, dataset, manifest, config, calibration=None):
        from biomodels.ops.classification_metrics import (classification_report, majority_baseline,
                                                          scores_at_threshold, threshold_for_recall)

        labels, probabilities = _predict_dataset(model, dataset)
        metrics = {"tracks": int(len(labels)), "positives": int(labels.sum())}
        metrics.update(classification_report(labels, probabilities, threshold=0.5))
        metrics.update({f"baseline/{key}": value for key, value in majority_baseline(labels).items()})
        positives = (calibration or {}).get("validation_positive_probabilities")
        if positives:
            threshold = threshold_for_recall(positives, config.target_recall, config.triage_confidence)
            at_threshold = scores_at_threshold(labels, probabilities, threshold)
            metrics.update({"triage/target_recall": config.target_recall, "triage/confidence": config.triage_confidence,
                            "triage/threshold": threshold,
                            **{f"triage/{key}": at_threshold[key] for key in ("recall", "precision", "flagged_fraction")}})
        return metrics

    def metrics_table(self, metrics):
        names = [("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"), ("ROC-AUC", "roc_auc"),
                 ("PR-AUC", "pr_auc"), ("precision at 0.5", "precision"), ("recall at 0.5", "recall")]
        rows = [(label, metrics[key], metrics[f"baseline/{key}"]) for label, key in names]
        if "triage/threshold" in metrics:
            target = metrics["triage/target_recall"]
            rows += [
                (f"review list for recall {target:g} ({metrics['triage/confidence']:.0%} confidence): threshold",
                 metrics["triage/threshold"], "-"),
                ("  recall on test", metrics["triage/recall"], "-"),
                ("  share of tracks to review", metrics["triage/flagged_fraction"], "1.0000"),
                ("  precision of the list", metrics["triage/precision"], "-"),
            ]
        rows.append(("tracks (positives)", f"{metrics['tracks']} ({metrics['positives']})", ""))
        return ("metric", "model", "majority baseline"), rows

    def serving_functions(self, model, config, calibration=None):
        import tensorflow as tf

        if config.model == "features":
            @tf.function(input_signature=[tf.TensorSpec([None, NUM_FEATURES], tf.float32, name="features")])
            def serve_features(features):
                probability = model({"features": self.preprocess(features, config)}, training=False)
                return {"probability": tf.reshape(tf.cast(probability, tf.float32), [-1])}

            return {"serving_default": serve_features}

        @tf.function(input_signature=[tf.TensorSpec([None, None, len(CHANNELS)], tf.float32, name="traces"),
                                      tf.TensorSpec([None], tf.int32, name="lengths")])
        def serve_traces(traces, lengths):
            probability = model({"traces": self.preprocess(traces, config), "lengths": lengths}, training=False)
            return {"probability": tf.reshape(tf.cast(probability, tf.float32), [-1])}

        return {"serving_default": serve_traces}

    def warmup_inputs(self, config):
        rng = np.random.default_rng(0)
        if config.model == "features":
            return [("serving_default", {"features": rng.normal(size=(n, NUM_FEATURES)).astype(np.float32)}) for n in (1, 32)]
        return [("serving_default", {"traces": rng.normal(size=(n, frames, len(CHANNELS))).astype(np.float32),
                                     "lengths": np.full(n, frames, np.int32)}) for n, frames in ((1, 40), (32, 120))]

    def bioimageio_description(self, config, pixel_size=None):
        raise ConfigError("the ccp model classifies intensity traces, not images: bioimage.io packages are for "
                          "image models, so export it for TF Serving without --bioimageio")

    def predict_files(self, predictor, input_path, output_dir, options):
        from biomodels.tasks.ccp_triage import write_triage

        return write_triage(self, predictor, input_path, output_dir, options)


def trace_array(track):
    """[frames, 2] float32: clathrin and auxilin; [0, 2] for a track given only as features."""
    if track.clathrin is None:
        return np.zeros((0, len(CHANNELS)), np.float32)
    return np.stack([track.clathrin, track.auxilin], axis=1).astype(np.float32)


def _track_files(directory):
    """Track files under `directory`: per cell folder one cmeAnalysis file (ProcessedTracks
    preferred to lifetimeData, which lacks the buffers and motion analysis), and CSVs."""
    root = os.path.abspath(directory)
    everything = sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True))
    processed = [p for p in everything if os.path.basename(p).startswith("ProcessedTracks") and p.endswith(".mat")]
    lifetime = [p for p in everything if os.path.basename(p) == "lifetimeData.mat"]
    chosen, cells = [], set()
    for path in processed + lifetime:
        cell = _cell_name(path, root)
        if cell not in cells:
            cells.add(cell)
            chosen.append(path)
    csvs = [p for p in everything if p.lower().endswith(".csv") and os.path.isfile(p)]
    return sorted(chosen) + csvs


def _cell_name(path, root):
    """The cell a cmeAnalysis file belongs to: its top folder under `root` (Cell1_1s
    for Cell1_1s/TagRFP/Tracking/ProcessedTracks.mat), else the file's folder name."""
    relative = _relative(path, root).split(os.sep)
    return relative[0] if len(relative) > 1 else os.path.basename(os.path.dirname(os.path.abspath(path))) or relative[0]


def _relative(path, root):
    return os.path.relpath(os.path.abspath(path), root)


def _safe_variance(variance):
    """Variances with zeros (a constant feature) replaced by 1, so standardising never divides by zero."""
    return [float(v) if v > 1e-12 else 1.0 for v in np.asarray(variance, np.float64)]


def _rounded(values):
    return [round(float(v), 6) for v in values]


def _predict_dataset(model, dataset):
    """(labels int array, probabilities float array) over a batched (inputs, labels) dataset."""
    import tensorflow as tf

    predict = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    labels, probabilities = [], []
    for inputs, targets in dataset:
        probabilities.append(np.asarray(predict(inputs), np.float64).reshape(-1))
        labels.append(np.asarray(targets).reshape(-1))
    return np.concatenate(labels).astype(np.int64), np.concatenate(probabilities)


def served_model_kind(predictor):
    """'features' or 'traces': from the training configuration when the predictor has
    it, else from the served signature's input names."""
    kind = predictor.config.get("model")
    if kind:
        return kind
    metadata = predictor.metadata() if hasattr(predictor, "metadata") else {}
    return "features" if '"features"' in json.dumps(metadata) else "traces"


TASK = CCPTask()
