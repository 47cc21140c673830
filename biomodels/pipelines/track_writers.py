"""Writers of clathrin-coated-pit tracks in the layouts `track_files` reads: CSV, MATLAB
v7.3 lifetimeData.mat and MATLAB v5 ProcessedTracks.mat. The synthetic generator, the
tests and people converting their own data use them."""

import csv

import numpy as np

from biomodels.atomic import atomic_path

MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2026 HDF5 schema 1.00 ."


def write_track_csv(path, tracks):
    """Tracks as a CSV in the layout `read_track_csv` reads (traces, no features)."""
    length = max(track.frames for track in tracks)
    optional = [name for name in ("background", "auxilin_pval") if all(getattr(t, name) is not None for t in tracks)]
    with_positions = all(track.positions is not None for track in tracks)
    columns = ["clathrin", "auxilin", *optional] + (["x", "y"] if with_positions else [])
    # a label column when any track has a label; an empty cell is no label (the auxilin rule decides)
    header = ["cell", "track", "frame_interval_s"] + (["label"] if any(t.label is not None for t in tracks) else [])
    header += [f"{name}_{i}" for name in columns for i in range(length)]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for track in tracks:
            values = {"clathrin": track.clathrin, "auxilin": track.auxilin, "background": track.background,
                      "auxilin_pval": track.auxilin_pval}
            if with_positions:
                values["x"], values["y"] = track.positions[:, 0], track.positions[:, 1]
            row = [track.cell, track.track_id, _text(track.frame_interval_s or 1.0)]
            if "label" in header:
                row.append("" if track.label is None else str(track.label))
            for name in columns:
                row += [_text(v) for v in values[name]] + [""] * (length - track.frames)
            writer.writerow(row)
    return path


def _text(value):
    return f"{value:.6g}"


def write_lifetime_data(path, tracks, frames=None):
    """Tracks as a MATLAB v7.3 lifetimeData.mat: HDF5 after MATLAB's 512-byte header,
    struct `lftData` with A, c, pval_Ar, x, y (tracks × frames × 2 as MATLAB sees
    them, NaN after each end), lifetime_s and framerate."""
    import h5py

    frames = frames or max(track.frames for track in tracks)
    shape = (len(tracks), frames, 2)
    fields = {name: np.full(shape, np.nan) for name in ("A", "c", "pval_Ar", "x", "y")}
    for index, track in enumerate(tracks):
        n = track.frames
        fields["A"][index, :n] = np.stack([track.clathrin, track.auxilin], axis=1)
        if track.background is not None:
            fields["c"][index, :n] = track.background[:, np.newaxis]
        if track.auxilin_pval is not None:
            fields["pval_Ar"][index, :n, 1] = track.auxilin_pval
            fields["pval_Ar"][index, :n, 0] = 0.0
        if track.positions is not None:
            fields["x"][index, :n] = track.positions[:, :1]
            fields["y"][index, :n] = track.positions[:, 1:]
    fields["lifetime_s"] = np.array([[t.lifetime_s or t.frames * (t.frame_interval_s or 1.0) for t in tracks]])
    fields["framerate"] = np.array([[tracks[0].frame_interval_s or 1.0]])
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=512) as handle:
            group = handle.create_group("lftData")
            group.attrs["MATLAB_class"] = np.bytes_("struct")
            for name, array in fields.items():
                dataset = group.create_dataset(name, data=np.asarray(array, np.float64).T)
                dataset.attrs["MATLAB_class"] = np.bytes_("double")
        with open(tmp, "r+b") as handle:
            handle.write(MATLAB_HEADER.ljust(116) + b"\x00" * 8 + b"\x00\x02IM" + b"\x00" * 384)
    return path


def write_processed_tracks(path, tracks):
    """Tracks as a MATLAB v5 ProcessedTracks.mat struct array (scipy)."""
    import scipy.io

    names = ("A", "c", "pval_Ar", "x", "y", "f", "lifetime_s", "catIdx", "startBuffer", "endBuffer", "MotionAnalysis")
    records = np.empty((1, len(tracks)), dtype=[(name, object) for name in names])
    for index, track in enumerate(tracks):
        n = track.frames
        x, y = (None, None) if track.positions is None else (track.positions[:, 0], track.positions[:, 1])
        pvalues = None if track.auxilin_pval is None else (np.zeros(n), track.auxilin_pval)
        records[0, index] = (
            _two_channels(track.clathrin, track.auxilin),
            _two_channels(track.background, track.background),
            _two_channels(*(pvalues or (None, None))),
            _two_channels(x, x),
            _two_channels(y, y),
            np.arange(1, n + 1, dtype=np.float64)[np.newaxis],
            float(track.lifetime_s or n * (track.frame_interval_s or 1.0)),
            float(track.category or 1),
            _buffer_struct(track.start_buffer), _buffer_struct(track.end_buffer),
            np.zeros((0, 0)),
        )
    with atomic_path(path) as tmp:
        scipy.io.savemat(tmp, {"tracks": records}, format="5", do_compression=True, appendmat=False)
    return path


def _two_channels(first, second):
    """A channels × frames array, or MATLAB's empty [] when a field is not recorded."""
    return np.zeros((0, 0)) if first is None else np.stack([first, second])


def _buffer_struct(values):
    if values is None:
        return np.zeros((0, 0))
    record = np.empty((1, 1), dtype=[("A", object)])
    record[0, 0] = (np.stack([values, np.zeros_like(values)]),)
    return record
