"""Readers of clathrin-coated-pit tracks: cmeAnalysis output and CSV (`track_writers`
writes the same layouts).

    ProcessedTracks.mat   MATLAB v5 struct array `tracks` (scipy): per track A, c, pval_Ar
                          (channels × frames; channel 0 clathrin, 1 auxilin), x, y, f,
                          startBuffer/endBuffer, MotionAnalysis, catIdx, lifetime_s
    lifetimeData.mat      MATLAB v7.3 (HDF5, h5py): struct `lftData` (or the root) with
                          A, and optionally c, pval_Ar, x, y, sbA, ebA as
                          tracks × frames × channels (NaN after each track's end),
                          lifetime_s, catIdx, framerate
    *.csv                 one row per track: `cell`, `track`, `label`, `frame_interval_s`,
                          `lifetime_s`; per-frame columns clathrin_0…, auxilin_0…,
                          background_0…, auxilin_pval_0…, x_0…, y_0… (empty after the end);
                          and/or the 11 feature columns of biomodels.ops.track_features

Each reader returns (tracks, skipped): `Track`s, and {reason: count} for the tracks it
left out (shorter than 2 frames, no finite clathrin or auxilin value), so nothing is
dropped without being counted. A file that is not what it claims to be raises an
`InputError` naming it.
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

MIN_FRAMES = 2
PER_FRAME = ("clathrin", "auxilin", "background", "auxilin_pval", "x", "y")
PER_FRAME_COLUMN = re.compile(r"^(clathrin|auxilin|auxilin_pval|background|x|y)_(\d+)$")
LABEL_WORDS = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "aux+": 1, "aux-": 0,
               "positive": 1, "negative": 0}


@dataclasses.dataclass
class Track:
    """One track. Per-frame arrays have one value per frame of the track; optional
    fields are None when the source does not record them."""

    cell: str
    track_id: str
    clathrin: np.ndarray = None
    auxilin: np.ndarray = None
    background: np.ndarray = None
    auxilin_pval: np.ndarray = None
    positions: np.ndarray = None          # (T, 2): x, y in pixels
    frame_interval_s: float = None
    lifetime_s: float = None
    label: int = None
    features: np.ndarray = None           # given features (CSV), in FEATURE_NAMES order
    start_buffer: np.ndarray = None       # clathrin amplitudes before the track
    end_buffer: np.ndarray = None
    total_displacement: float = None      # the tracker's motion analysis
    msd: np.ndarray = None
    category: int = None

    @property
    def frames(self):
        return 0 if self.clathrin is None else len(self.clathrin)


def is_hdf5(path):
    """MATLAB v7.3 files are HDF5 files (after a 512-byte text header)."""
    import h5py

    return h5py.is_hdf5(path)


# -- cmeAnalysis ProcessedTracks.mat (MATLAB v5) ---------------------------------------
def read_processed_tracks(path, cell):
    """The tracks of a cmeAnalysis ProcessedTracks.mat (MATLAB v5)."""
    import scipy.io

    _require_file(path)
    if is_hdf5(path):
        raise InputError(path, "is a MATLAB v7.3 file; ProcessedTracks.mat is read as MATLAB v5 (save it with "
                               "-v7), or give the cell's lifetimeData.mat or a CSV instead")
    try:
        contents = scipy.io.loadmat(path, simplify_cells=True)
    except Exception as error:  # scipy raises several types for damaged files
        raise InputError(path, f"not a readable MATLAB file ({str(error).splitlines()[0]})") from None
    if "tracks" not in contents:
        raise InputError(path, "has no 'tracks' struct array (expected cmeAnalysis ProcessedTracks.mat)")
    records = contents["tracks"]
    records = [records] if isinstance(records, dict) else list(np.atleast_1d(records))
    tracks, skipped = [], collections.Counter()
    for index, record in enumerate(records, start=1):
        if not isinstance(record, dict) or "A" not in record:
            raise InputError(path, f"track {index} has no field 'A' (intensity per channel)")
        _require_numbers(path, index, record)
        frames = np.size(record.get("f", [])) or None
        amplitude = _channels_by_frames(record["A"], frames)
        if amplitude.shape[0] < 2:
            raise InputError(path, f"track {index}: field 'A' has {amplitude.shape[0]} channel(s); need clathrin and auxilin")
        frames = amplitude.shape[1]
        background = _optional_channels(record.get("c"), frames)
        pvalues = _optional_channels(record.get("pval_Ar"), frames)
        x, y = _optional_channels(record.get("x"), frames), _optional_channels(record.get("y"), frames)
        motion = record.get("MotionAnalysis")
        lifetime_s = _scalar(record.get("lifetime_s"))
        track = Track(
            cell=cell, track_id=str(index), clathrin=amplitude[0], auxilin=amplitude[1],
            background=None if background is None else background[0],
            auxilin_pval=None if pvalues is None or pvalues.shape[0] < 2 else pvalues[1],
            positions=None if x is None or y is None else np.stack([x[0], y[0]], axis=1),
            lifetime_s=lifetime_s, frame_interval_s=lifetime_s / frames if lifetime_s else None,
            start_buffer=_buffer(record.get("startBuffer")), end_buffer=_buffer(record.get("endBuffer")),
            total_displacement=_scalar(motion.get("totalDisplacement")) if isinstance(motion, dict) else None,
            msd=np.asarray(motion.get("MSD"), np.float64).ravel() if isinstance(motion, dict) and "MSD" in motion else None,
            category=None if _scalar(record.get("catIdx")) is None else int(_scalar(record.get("catIdx"))),
        )
        _keep_or_count(track, tracks, skipped)
    return tracks, dict(skipped)


#: the fields of a ProcessedTracks.mat track that the reader takes as numbers, and those of
#: its nested structs
_PROCESSED_FIELDS = ("A", "c", "pval_Ar", "x", "y", "f", "lifetime_s", "catIdx")
_NESTED_FIELDS = {"startBuffer": ("A",), "endBuffer": ("A",), "MotionAnalysis": ("totalDisplacement", "MSD")}


def _require_numbers(path, index, record):
    """One line naming the file, the track and the field when a field the reader uses
    holds text or anything but numbers."""
    values = [(name, record.get(name)) for name in _PROCESSED_FIELDS]
    for struct, names in _NESTED_FIELDS.items():
        if isinstance(record.get(struct), dict):
            values += [(f"{struct}.{name}", record[struct].get(name)) for name in names]
    for name, value in values:
        if value is None or np.size(value) == 0:
            continue
        kind = np.asarray(value).dtype.kind
        if kind not in "biuf":
            held = "text" if kind in "US" or isinstance(value, str) else f"{np.asarray(value).dtype} values"
            raise InputError(path, f"track {index}: field {name!r} holds {held}, not numbers")


def _channels_by_frames(value, frames):
    array = np.asarray(value, np.float64)
    if array.ndim == 1:
        array = array.reshape(-1, frames) if frames and array.size % frames == 0 else array[:, np.newaxis]
    return array


def _optional_channels(value, frames):
    if value is None or np.size(value) == 0:
        return None
    array = _channels_by_frames(value, frames)
    return array if array.shape[1] == frames else None


def _buffer(value):
    """Clathrin amplitudes of a start or end buffer struct, or None."""
    if not isinstance(value, dict) or "A" not in value or np.size(value["A"]) == 0:
        return None
    amplitude = np.asarray(value["A"], np.float64)
    return amplitude[0] if amplitude.ndim == 2 else amplitude.ravel()


def _scalar(value):
    if value is None or np.size(value) == 0:
        return None
    return float(np.asarray(value, np.float64).ravel()[0])


# -- cmeAnalysis lifetimeData.mat (MATLAB v7.3 / HDF5) --------------------------------------
def read_lifetime_data(path, cell):
    """The tracks of a cmeAnalysis lifetimeData.mat (MATLAB v7.3, HDF5)."""
    import h5py

    _require_file(path)
    if not is_hdf5(path):
        raise InputError(path, "is not a MATLAB v7.3 (HDF5) file; lifetimeData.mat is read with h5py")
    try:
        with h5py.File(path, "r") as handle:
            group = handle["lftData"] if "lftData" in handle else handle
            if "A" not in group:
                raise InputError(path, "has no dataset 'A' (tracks × frames × channels) in lftData")
            fields = _numeric_fields(path, group)
    except OSError as error:
        raise InputError(path, f"not a readable HDF5 file ({str(error).splitlines()[0]})") from None
    amplitude = fields["A"]
    if amplitude.ndim != 3 or amplitude.shape[2] < 2 or amplitude.shape[2] > 8:
        raise InputError(path, f"dataset 'A' has shape {amplitude.shape} (as MATLAB sees it); expected tracks × frames × channels with 2 or more channels")
    count = amplitude.shape[0]
    per_track = {name: fields[name].ravel() for name in ("lifetime_s", "catIdx", "label")
                 if name in fields and fields[name].size == count}
    # cmeAnalysis's "framerate" holds the time between frames in seconds, not a rate
    frame_interval_s = _frame_interval(path, "framerate", _scalar(fields.get("framerate", fields.get("frameRate"))))
    tracks, skipped = [], collections.Counter()
    for index in range(count):
        frames = _last_finite(amplitude[index, :, 0]) + 1
        pick = lambda name, channel: fields[name][index, :frames, channel] if name in fields and fields[name].shape == amplitude.shape else None  # noqa: E731
        x, y = pick("x", 0), pick("y", 0)
        lifetime_s = float(per_track["lifetime_s"][index]) if "lifetime_s" in per_track else None
        track = Track(
            cell=cell, track_id=str(index + 1), clathrin=amplitude[index, :frames, 0], auxilin=amplitude[index, :frames, 1],
            background=pick("c", 0), auxilin_pval=pick("pval_Ar", 1),
            positions=None if x is None or y is None else np.stack([x, y], axis=1),
            lifetime_s=lifetime_s, frame_interval_s=frame_interval_s,
            start_buffer=_finite(fields["sbA"][index, :, 0]) if "sbA" in fields and fields["sbA"].ndim == 3 else None,
            end_buffer=_finite(fields["ebA"][index, :, 0]) if "ebA" in fields and fields["ebA"].ndim == 3 else None,
            label=_binary_label(path, f"track {index + 1}", per_track["label"][index]) if "label" in per_track else None,
            category=int(per_track["catIdx"][index]) if "catIdx" in per_track else None,
        )
        _keep_or_count(track, tracks, skipped)
    return tracks, dict(skipped)


# the fields of lftData this reader uses; others (MATLAB writes char and cell fields into
# real files: file names, notes) are left alone
_LIFETIME_FIELDS = ("A", "c", "x", "y", "pval_Ar", "sbA", "ebA", "lifetime_s", "catIdx", "label", "framerate", "frameRate")


def _numeric_fields(path, group):
    """{name: float64 array in MATLAB's axis order} of the fields the reader uses; one
    that holds text, cell references or anything but numbers is an InputError."""
    import h5py

    fields = {}
    for name in _LIFETIME_FIELDS:
        dataset = group.get(name)
        if not isinstance(dataset, h5py.Dataset):
            continue
        matlab_class = dataset.attrs.get("MATLAB_class", b"")
        matlab_class = matlab_class.decode() if isinstance(matlab_class, bytes) else str(matlab_class)
        if matlab_class in ("char", "cell", "struct") or dataset.dtype.kind not in "biuf":
            kind = f"MATLAB {matlab_class}" if matlab_class else f"{dataset.dtype} values"
            raise InputError(path, f"dataset {name!r} holds {kind}, not numbers")
        fields[name] = np.asarray(dataset, np.float64).T  # MATLAB writes column-major: h5py sees the axes reversed
    return fields


def _last_finite(values):
    finite = np.flatnonzero(np.isfinite(values))
    return int(finite[-1]) if finite.size else -1


def _finite(values):
    values = values[np.isfinite(values)]
    return values if values.size else None


# -- CSV ---------------------------------------------------------------------------------
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


# -- shared checks -------------------------------------------------------------------------
def _binary_label(path, where, value):
    """0 or 1 from a number; NaN means no label (None); anything else is refused."""
    if np.isnan(value):
        return None
    if value not in (0.0, 1.0):
        raise InputError(path, f"{where}: label {value:g} is not 0 or 1")
    return int(value)


def _frame_interval(path, where, value):
    """A frame interval in seconds: None when not given, else positive and finite."""
    if value is None:
        return None
    if not np.isfinite(value) or value <= 0:
        raise InputError(path, f"{where}: frame interval {value:g} s is not a positive number of seconds")
    return float(value)



def _keep_or_count(track, tracks, skipped):
    """Append `track`, or count why it is left out."""
    if track.frames < MIN_FRAMES:
        skipped["shorter than 2 frames"] += 1
    elif not np.isfinite(track.clathrin).any() or not np.isfinite(track.auxilin).any():
        skipped["clathrin or auxilin all NaN"] += 1
    else:
        track.clathrin = _fill_gaps(track.clathrin)
        track.auxilin = _fill_gaps(track.auxilin)
        tracks.append(track)


def _fill_gaps(values):
    """Linear interpolation over non-finite frames inside a track (tracker gaps)."""
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return values
    positions = np.arange(len(values))
    return np.interp(positions, positions[finite], values[finite])


def _require_file(path):
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
