"""The ccp triage list: every track of the user's files ranked by the model's
probability, the ones to review flagged, cells ranked by their share of flagged tracks.

    triage.csv             rank, cell, track, file, frames, lifetime_s, probability, review,
                           label (given, or by the auxilin rule when p-values are present)
    cells.csv              per cell: tracks, flagged, flagged fraction, mean probability,
                           tracks left out; cells with the most flagged first
    triage_examples.png    clathrin and auxilin traces from the top, the borderline and the
                           bottom of the list
    triage_summary.json    the threshold and how it was set, counts, tracks left out and why

The review threshold keeps `--target_recall` of the validation split's positives (the
probabilities kept at training time), or is `--threshold` when given.
"""

import collections
import csv
import os

import numpy as np

from biomodels import config as config_lib
from biomodels.atomic import atomic_path
from biomodels.errors import InputError
from biomodels.pipelines.readers import readable
from biomodels.tasks.ccp import data, inference
from biomodels.tasks.ccp.serving import served_model_kind

EXAMPLES_PER_ROW = 4


def write_triage(predictor, config, input_path, output_dir, options):
    """Rank the tracks under `input_path` by `predictor` of a run trained with `config`;
    returns the paths written."""
    from biomodels.report import say

    kind = served_model_kind(predictor)
    sources = data.find_sources(input_path)
    threshold = inference.review_threshold(predictor, config, options)  # said before the files are read
    tracks, files, skipped, skipped_by_cell = data.gather_tracks(input_path, sources, kind)
    result = inference.triage(predictor, config, tracks, threshold)
    review, threshold, basis = result.review, result.threshold, result.basis
    order = np.argsort(-result.probability, kind="stable")
    written = [
        _write_track_table(os.path.join(output_dir, "triage.csv"), config, tracks, files, result, order),
        _write_cell_table(os.path.join(output_dir, "cells.csv"), tracks, result, skipped_by_cell),
    ]
    if kind == "traces":
        written.append(_write_examples(os.path.join(output_dir, "triage_examples.png"), tracks, result, order))
    summary = {
        "model": predictor.source, "model_kind": kind,
        "threshold": threshold, "threshold_basis": basis, "tracks": len(tracks), "cells": len(set(t.cell for t in tracks)),
        "flagged_for_review": int(review.sum()), "left_out": dict(skipped),
    }
    written.append(os.path.join(output_dir, "triage_summary.json"))
    config_lib.write_json_atomic(written[-1], summary)
    left = f"; left out {sum(skipped.values())} ({', '.join(f'{n} {why}' for why, n in skipped.items())})" if skipped else ""
    say(f"Ranked {len(tracks)} tracks of {summary['cells']} cell(s): {int(review.sum())} flagged for review at "
        f"probability >= {threshold:.4f} ({basis}){left}")
    return written


def _write_track_table(path, config, tracks, files, result, order):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "cell", "track", "file", "frames", "lifetime_s", "probability", "review", "label"])
        for rank, index in enumerate(order, start=1):
            track = tracks[index]
            label = data.label(track, config)
            lifetime = track.lifetime_s or (track.frames * (track.frame_interval_s or config.frame_interval_s) or None)
            writer.writerow([rank, readable(track.cell), readable(track.track_id), readable(files[index]), track.frames,
                             "" if lifetime is None else f"{lifetime:g}", f"{result.probability[index]:.6f}",
                             int(result.review[index]), "" if label is None else label])
    return path


def _write_cell_table(path, tracks, result, skipped_by_cell):
    probabilities, review = result.probability, result.review
    cells = collections.defaultdict(list)
    for index, track in enumerate(tracks):
        cells[track.cell].append(index)
    rows = []
    for cell, indices in cells.items():
        flagged = int(review[indices].sum())
        rows.append((cell, len(indices), flagged, flagged / len(indices), float(probabilities[indices].mean()),
                     skipped_by_cell.get(cell, 0)))
    rows.sort(key=lambda row: (-row[3], row[0]))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "cell", "tracks", "flagged_for_review", "flagged_fraction", "mean_probability", "left_out"])
        for rank, (cell, count, flagged, fraction, mean, left_out) in enumerate(rows, start=1):
            writer.writerow([rank, readable(cell), count, flagged, f"{fraction:.4f}", f"{mean:.4f}", left_out])
    return path


def _write_examples(path, tracks, result, order):
    """Traces of the top, the borderline (nearest the threshold) and the bottom tracks."""
    from biomodels.pipelines.trace_plots import draw_trace_grid

    probabilities = result.probability
    nearest = np.argsort(np.abs(probabilities - result.threshold), kind="stable")[:EXAMPLES_PER_ROW]
    groups = [("top", order[:EXAMPLES_PER_ROW]), ("borderline", nearest), ("bottom", order[::-1][:EXAMPLES_PER_ROW])]
    rows = []
    for label, indices in groups:
        panels = [(f"{tracks[i].cell} #{tracks[i].track_id}  p={probabilities[i]:.3f}", tracks[i].clathrin, tracks[i].auxilin)
                  for i in indices]
        rows.append((label, panels))
    return draw_trace_grid(rows, path)
