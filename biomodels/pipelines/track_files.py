"""Readers of clathrin-coated-pit tracks: cmeAnalysis output and CSV (`track_writers`
writes the same layouts).

    ProcessedTracks.mat   MATLAB v5 struct array `tracks` (scipy): per track A, c, pval_Ar
                          (channels × frames; channel 0 clathrin, 1 auxilin), x, y, f,
                          startBuffer/endBuffer, MotionAnalysis, catIdx, lifetime_s
    lifetimeData.mat      MATLAB v7.3 (HDF5, h5py): struct `lftData` (or the root) with
                          A, and optionally c, pval_Ar, x, y, sbA, ebA as
                          tracks × frames × channels (NaN after each track's end),
                          lifetime_s, catIdx, framerate
    *.csv                 `track_csv`

Each reader returns (tracks, skipped): `Track`s, and {reason: count} for the tracks it
left out (shorter than 2 frames, no finite clathrin or auxilin value), so nothing is
dropped without being counted. A file that is not what it claims to be raises an
`InputError` naming it.
"""

import collections
import dataclasses
import os

import numpy as np

from biomodels.errors import InputError

MIN_FRAMES = 2


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
