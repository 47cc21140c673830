"""The CSV reader of clathrin-coated-pit tracks (`track_writers.write_track_csv` writes the
layout): one row per track, `cell`, `track`, `label`, `frame_interval_s`, `lifetime_s`;
per-frame columns clathrin_0…, auxilin_0…, background_0…, auxilin_pval_0…, x_0…, y_0…
(empty after the end); and/or the 11 feature columns of biomodels.ops.track_features.
It returns (tracks, skipped) as the cmeAnalysis readers of `track_files` do.
"""

import collections
import csv
import dataclasses
import functools
import os
import re

import numpy as np

from biomodels.errors import InputError
from biomodels.ops.track_features import FEATURE_NAMES
from biomodels.pipelines.track_files import (Track, _binary_label, _frame_interval, _keep_or_count, _last_finite,
                                             _require_file)

PER_FRAME = ("clathrin", "auxilin", "background", "auxilin_pval", "x", "y")
PER_FRAME_COLUMN = re.compile(r"^(clathrin|auxilin|auxilin_pval|background|x|y)_(\d+)$")
LABEL_WORDS = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "aux+": 1, "aux-": 0,
               "positive": 1, "negative": 0}


def read_track_csv(path, cell=None):
    """The tracks of a CSV with one row per track; `cell` keeps only that cell's rows
    (the `cell` column, else the file's name). The file is parsed once for all its cells
    (prepare and predict read it cell by cell, which would otherwise parse it once per
    cell: quadratic in the number of cells)."""
    _require_file(path)
    status = os.stat(path)
    by_cell = _parsed_track_csv(path, status.st_mtime_ns, status.st_size)
    chosen = [by_cell.get(cell, ([], {}))] if cell is not None else by_cell.values()
    tracks, skipped = [], collections.Counter()
    for cell_tracks, cell_skipped in chosen:
        tracks += [dataclasses.replace(track) for track in cell_tracks]  # copies: the cache's own stay as read
        skipped.update(cell_skipped)
    return tracks, dict(skipped)


@functools.lru_cache(maxsize=1)
def _parsed_track_csv(path, mtime_ns, size):
    """{cell: (tracks, {reason: count})} of a track CSV, cells in order of appearance;
    cached for the file's latest version (the modification time and size are the key)."""
    default_cell = os.path.splitext(os.path.basename(path))[0]
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"not a readable CSV file ({str(error).splitlines()[0]})") from None
    if not rows:
        raise InputError(path, "is empty")
    header = [name.strip() for name in rows[0]]
    per_frame = {name: {} for name in PER_FRAME}
    for column, name in enumerate(header):
        match = PER_FRAME_COLUMN.match(name)
        if match:
            per_frame[match[1]][int(match[2])] = column
    per_frame = {name: [columns[i] for i in sorted(columns)] for name, columns in per_frame.items() if columns}
    has_traces = "clathrin" in per_frame and "auxilin" in per_frame
    has_features = all(name in header for name in FEATURE_NAMES)
    if not has_traces and not has_features:
        missing = [name for name in FEATURE_NAMES if name not in header]
        raise InputError(path, "has neither trace columns (clathrin_0…, auxilin_0…) nor all feature columns "
                               f"(missing {', '.join(missing)})")
    scalar = {name: header.index(name) for name in ("cell", "track", "label", "frame_interval_s", "lifetime_s") if name in header}
    feature_columns = [header.index(name) for name in FEATURE_NAMES] if has_features else None
    by_cell = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(value.strip() for value in row):
            continue
        row = row + [""] * (len(header) - len(row))
        row_cell = row[scalar["cell"]].strip() if "cell" in scalar else default_cell
        tracks, skipped = by_cell.setdefault(row_cell, ([], collections.Counter()))
        arrays = {name: _numbers(path, line, row, columns) for name, columns in per_frame.items()}
        frames = _last_finite(arrays["clathrin"]) + 1 if has_traces else 0
        cut = lambda name: arrays[name][:frames] if name in arrays and frames else None  # noqa: E731
        x, y = cut("x"), cut("y")
        track = Track(
            cell=row_cell, track_id=row[scalar["track"]].strip() if "track" in scalar else str(line - 1),
            clathrin=cut("clathrin"), auxilin=cut("auxilin"), background=cut("background"),
            auxilin_pval=cut("auxilin_pval"), positions=None if x is None or y is None else np.stack([x, y], axis=1),
            frame_interval_s=_frame_interval(path, f"line {line}",
                                             _optional_number(path, line, row, scalar.get("frame_interval_s"))),
            lifetime_s=_optional_number(path, line, row, scalar.get("lifetime_s")),
            label=_label(path, line, row[scalar["label"]]) if "label" in scalar else None,
            features=_numbers(path, line, row, feature_columns).astype(np.float32) if has_features else None,
        )
        if has_features and not np.all(np.isfinite(track.features)):
            skipped["features not finite"] += 1
            continue
        if has_traces:
            _keep_or_count(track, tracks, skipped)
        else:
            tracks.append(track)
    return {name: (tracks, dict(skipped)) for name, (tracks, skipped) in by_cell.items()}


def csv_cells(path):
    """The distinct values of a track CSV's `cell` column in order of appearance, or
    [file stem] without that column."""
    _require_file(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if "cell" not in header:
                return [os.path.splitext(os.path.basename(path))[0]]
            column = header.index("cell")
            return list(dict.fromkeys(row[column].strip() for row in reader if len(row) > column and row[column].strip()))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"not a readable CSV file ({str(error).splitlines()[0]})") from None


def _numbers(path, line, row, columns):
    try:
        return np.array([float(row[c]) if row[c].strip() else np.nan for c in columns], np.float64)
    except ValueError:
        bad = next(row[c] for c in columns if not _is_number(row[c]))
        raise InputError(path, f"line {line}: {bad!r} is not a number") from None


def _optional_number(path, line, row, column):
    if column is None or not row[column].strip():
        return None
    return float(_numbers(path, line, row, [column])[0])


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return not text.strip()


def _label(path, line, text):
    word = text.strip().lower()
    if word in ("", "nan"):
        return None
    if _is_number(word):
        return _binary_label(path, f"line {line}", float(word))
    if word not in LABEL_WORDS:
        raise InputError(path, f"line {line}: label {text!r} is not one of 0/1, true/false, aux+/aux-, positive/negative")
    return LABEL_WORDS[word]
