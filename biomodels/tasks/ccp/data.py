"""ccp's raw data: finding track files (cmeAnalysis folders and CSVs), reading tracks
into examples (traces, the 11 features, the label given or by the auxilin rule), the
training split's statistics, and the TensorFlow side: preprocessing, augmentation, the
network's inputs and length-bucketed batches."""

import collections
import glob
import os

import numpy as np

from biomodels.errors import ConfigError, InputError
from biomodels.ops.track_features import FEATURE_NAMES, auxilin_positive, track_features
from biomodels.pipelines import readers, track_csv, track_files
from biomodels.pipelines.partial_sums import Moments, median_of_counts
from biomodels.tasks.base import Source
from biomodels.tasks.ccp.config import CHANNELS

BUCKET_BOUNDARIES = (16, 32, 64, 128)


def find_sources(input_path):
    readers.require_exists(input_path)
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
                        for cell in track_csv.csv_cells(path)]
        elif path.lower().endswith(".mat"):
            cell = _cell_name(path, root)
            sources.append(Source(name=cell, group=cell, paths=(path,)))
        else:
            raise InputError(path, "expected a .mat file of cmeAnalysis or a .csv of tracks")
    return sources


def read_tracks(source):
    """(tracks, {reason: count} left out) of one source."""
    path = source.paths[0]
    if path.lower().endswith(".csv"):
        return track_csv.read_track_csv(path, cell=source.group)
    if track_files.is_hdf5(path):
        return track_files.read_lifetime_data(path, source.group)
    return track_files.read_processed_tracks(path, source.group)


def gather_tracks(input_path, sources, kind):
    """(tracks, the file of each, Counter of tracks left out by why, Counter of tracks
    left out by cell) of `sources` (found under `input_path`), for a served model of
    `kind` ("features" or "traces": a traces model leaves out tracks given only as
    features). No track to rank is an InputError naming `input_path`."""
    from biomodels.report import progress_bar

    tracks, files, skipped, skipped_by_cell = [], [], collections.Counter(), collections.Counter()
    bar = progress_bar(len(sources), "reading tracks")
    for done, source in enumerate(sources, start=1):
        found, left_out = read_tracks(source)
        left_out = collections.Counter(left_out)
        for track in found:
            if kind == "traces" and track.clathrin is None:
                left_out["features only (no traces)"] += 1
                continue
            tracks.append(track)
            files.append(source.paths[0])
        skipped.update(left_out)
        skipped_by_cell[source.group] += sum(left_out.values())
        bar.update(done)
    if not tracks:
        raise InputError(input_path, f"no tracks to rank (left out: {dict(skipped) or 'none'})")
    return tracks, files, skipped, skipped_by_cell


def read_source(source, config):
    tracks, skipped = read_tracks(source)
    examples = []
    by_rule = sum(1 for track in tracks if track.label is None)
    for track in tracks:
        given = label(track, config)
        if given is None:
            raise InputError(source.paths[0], f"track {track.track_id} of {source.group} has no label and no auxilin "
                                              "p-values (pval_Ar, auxilin_pval_*) to label it by the auxilin rule")
        examples.append({"traces": trace_array(track), "features": features(track, config),
                         "label": np.int64(given)})
    if not examples:
        raise InputError(source.paths[0], f"no usable tracks for {source.group} (left out: {skipped or 'none'})")
    positives = int(sum(example["label"] for example in examples))
    info = {"tracks": len(examples), "positives": positives, "labels_by_rule": by_rule, "skipped": skipped}
    return info, examples


def channel_indices(config):
    """Where the configured trace channels lie in the prepared traces (clathrin, auxilin)."""
    chosen = tuple(config.trace_channels)
    if not chosen or len(set(chosen)) != len(chosen) or not set(chosen) <= set(CHANNELS):
        raise ConfigError(f"--set trace_channels={','.join(chosen)}: choose clathrin or clathrin,auxilin")
    return [CHANNELS.index(name) for name in chosen]


def check_channels(config, manifest):
    """Refuse auxilin as an input when labels come from the auxilin rule: the model would
    re-learn the rule from the channel it is computed on."""
    channel_indices(config)
    if "auxilin" not in config.trace_channels:
        return
    by_rule = [source.details.get("labels_by_rule") for source in manifest.sources]
    if any(count is None for count in by_rule) or sum(by_rule):
        count = "some" if any(count is None for count in by_rule) else str(sum(by_rule))
        raise ConfigError(f"--set trace_channels={','.join(config.trace_channels)}: {count} training labels come from "
                          "the auxilin rule, which a model reading the auxilin trace would re-learn; read clathrin "
                          "alone, or give every track a label of your own (a label column or field)")


def label(track, config):
    """The track's given label, else the auxilin rule's answer, else None."""
    if track.label is not None:
        return int(track.label)
    if track.auxilin_pval is None:
        return None
    return int(auxilin_positive(track.auxilin_pval, config.aux_pval_cutoff, config.aux_consecutive,
                                config.aux_short_track_frames))


def features(track, config):
    """The 11 features: as given (CSV feature columns), else computed from the track."""
    if track.features is not None:
        return np.asarray(track.features, np.float32)
    return track_features(
        track.clathrin, track.background, track.positions, lifetime_s=track.lifetime_s,
        frame_interval_s=track.frame_interval_s or config.frame_interval_s, start_buffer=track.start_buffer,
        end_buffer=track.end_buffer, total_displacement=track.total_displacement, msd=track.msd,
    )


def statistics_sums(examples):
    """Counts, the moments of the features and of the traces' frames, and the trace
    lengths, of `examples` (partial sums, see biomodels.pipelines.partial_sums)."""
    examples = list(examples)
    traced = [example["traces"] for example in examples if len(example["traces"])]
    return {
        "tracks": len(examples), "positives": sum(int(example["label"]) for example in examples),
        "tracks_without_traces": len(examples) - len(traced),
        "features": Moments.of([example["features"] for example in examples], len(FEATURE_NAMES)),
        "frames": Moments.of(np.concatenate(traced) if traced else [], len(CHANNELS)),
        "lengths": collections.Counter(len(traces) for traces in traced),
    }


def statistics_from_sums(sums):
    """Counts, and the feature and channel means and variances the models standardise with."""
    count, frames = sums.get("tracks", 0), sums.get("frames")
    features = sums.get("features") or Moments.of([], len(FEATURE_NAMES))
    lengths = sums.get("lengths", collections.Counter())
    return {
        "tracks": count, "positives": sums.get("positives", 0), "positive_fraction": sums.get("positives", 0) / max(1, count),
        "feature_names": list(FEATURE_NAMES),
        "feature_mean": features.mean.tolist(), "feature_variance": _safe_variance(features.variance),
        "channel_names": list(CHANNELS),
        "channel_mean": frames.mean.tolist() if frames and frames.count else [0.0] * len(CHANNELS),
        "channel_variance": _safe_variance(frames.variance) if frames and frames.count else [1.0] * len(CHANNELS),
        "tracks_without_traces": sums.get("tracks_without_traces", 0),
        "frames_median": median_of_counts(lengths), "frames_max": int(max(lengths, default=0)),
    }


def preprocess(inputs):
    """Cast to float32 and set non-finite values (NaN padding) to zero; the models
    standardise their inputs themselves with the training statistics."""
    import tensorflow as tf

    inputs = tf.cast(inputs, tf.float32)
    return tf.where(tf.math.is_finite(inputs), inputs, tf.zeros_like(inputs))


def augment(example, seed, config):
    if config.model != "traces" or not config.intensity_augmentation:
        return example
    return {**example, "traces": example["traces"] * _channel_gains([1, len(CHANNELS)], seed, config)}


def _channel_gains(shape, seed, config):
    """Gains of the trace channels, uniform in 1 ± intensity_augmentation: the same
    factor for every frame of a channel of a track."""
    import tensorflow as tf

    spread = config.intensity_augmentation
    return tf.random.stateless_uniform(shape, seed, 1.0 - spread, 1.0 + spread)


def model_io(example, config):
    import tensorflow as tf

    target = tf.reshape(tf.cast(example["label"], tf.float32), [1])
    if config.model == "features":
        return {"features": preprocess(example["features"])}, target
    traces = tf.gather(preprocess(example["traces"]), channel_indices(config), axis=1)
    return {"traces": traces, "lengths": tf.shape(traces)[0]}, target


def batch(data, batch_size, training, whole=True):
    """Whole training batches always (`whole` is there for Task.batch's signature: ccp's
    epochs are not one-pass, its buckets of lengths leave a pass's batch count unknown)."""
    if "lengths" not in data.element_spec[0]:
        return data.batch(batch_size, drop_remainder=training)
    if not training:
        return data.padded_batch(batch_size)
    # training batches of similar lengths: less padding to compute over
    return data.bucket_by_sequence_length(
        lambda inputs, label: inputs["lengths"], bucket_boundaries=list(BUCKET_BOUNDARIES),
        bucket_batch_sizes=[batch_size] * (len(BUCKET_BOUNDARIES) + 1), drop_remainder=True,
    )


def training_arrays(examples, config):
    """The kept training tracks in memory for `epoch_batches`: `model_io` of every one,
    stacked; the traces as one ragged tensor [tracks, frames, channels], so memory is
    what the frames take, however the lengths spread."""
    import tensorflow as tf

    chunks = list(examples.map(lambda example: model_io(example, config), num_parallel_calls=tf.data.AUTOTUNE,
                               deterministic=True).padded_batch(4096))
    if not chunks:
        return None
    inputs = {name: tf.concat([chunk[0][name] for chunk in chunks], 0) for name in chunks[0][0] if name != "traces"}
    if "lengths" in inputs:
        inputs["traces"] = tf.concat([tf.RaggedTensor.from_tensor(chunk[0]["traces"], lengths=chunk[0]["lengths"])
                                      for chunk in chunks], 0)
    return inputs, tf.concat([chunk[1] for chunk in chunks], 0)


def epoch_batches(arrays, seed, batch_size, config):
    """One pass over the tracks of `training_arrays` in an order shuffled from the
    stateless `seed`, as whole batches: for the traces model, of tracks of one bucket of
    lengths (those of `batch`, in the order the buckets fill), zero-padded to the batch's
    longest track and each track's channels given `augment`'s gains; the remainder of each
    bucket waits for another pass. The work is a gather a batch, not tf.data's steps an
    example: ccp's steps are short enough (5-60 ms) that those steps would show."""
    import tensorflow as tf

    from biomodels.pipelines.dataset import gathered_batches, shuffled_rows

    inputs, targets = arrays
    if "lengths" not in inputs:
        rows = shuffled_rows(tf.shape(targets)[0], seed, batch_size)
    else:
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(targets)[0]), seed)
        rows = tf.gather(order, _bucket_batches(tf.gather(inputs["lengths"], order), batch_size))

    def gathered(index, rows):
        chosen = {name: tf.gather(values, rows) for name, values in inputs.items()}
        if "lengths" in chosen:
            chosen["traces"] = chosen["traces"].to_tensor()
            if config.intensity_augmentation:
                gains_seed = tf.random.experimental.stateless_fold_in(seed, index)
                chosen["traces"] *= _channel_gains([batch_size, 1, chosen["traces"].shape[-1]], gains_seed, config)
        return chosen, tf.gather(targets, rows)

    return gathered_batches(rows, gathered)


def _bucket_batches(lengths, batch_size):
    """[batches, batch_size] positions in `lengths` grouped as `batch`'s buckets group
    tracks arriving in that order: whole batches of one bucket, ordered by the position
    of their last track (when bucket_by_sequence_length would emit them)."""
    import tensorflow as tf

    bucket = tf.searchsorted(tf.constant(BUCKET_BOUNDARIES, lengths.dtype), lengths, side="right")
    groups = []
    for index in range(len(BUCKET_BOUNDARIES) + 1):
        positions = tf.cast(tf.where(tf.equal(bucket, index))[:, 0], tf.int32)
        groups.append(tf.reshape(positions[:tf.size(positions) // batch_size * batch_size], [-1, batch_size]))
    groups = tf.concat(groups, 0)
    return tf.gather(groups, tf.argsort(groups[:, -1]))


def trace_array(track, channels=CHANNELS):
    """[frames, len(channels)] float32 of the named traces (clathrin, auxilin); no frames
    for a track given only as features."""
    if track.clathrin is None:
        return np.zeros((0, len(channels)), np.float32)
    return np.stack([getattr(track, name) for name in channels], axis=1).astype(np.float32)


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
