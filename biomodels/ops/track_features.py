"""Numbers computed from one clathrin-coated-pit track: the study's 11 features from the
clathrin trace, and the auxilin rule that labels a track.

The 11 features, in the order the feature model reads them (the study's column names):

    lifetime        track lifetime in seconds
    max_intensity   highest clathrin amplitude over the track
    background      clathrin background at the frame of that maximum
    totaldisp       distance between the first and last positions (or the tracker's value)
    max_msd         largest mean squared displacement over lags up to half the track
                    (or the maximum of the tracker's MSD curve)
    avg_rise        mean of the rising frame-to-frame steps of the clathrin trace
    avg_dec         mean of the falling steps (a negative number)
    risevsdec       number of rising steps over number of falling steps
    avg_mom_rise, avg_mom_dec, risevsdec_mom
                    the same three on the second differences (changes of the steps)

The steps are taken over the trace extended by the tracker's start and end buffers
when it recorded them. Where the study's code departs from this it had bugs: without
buffers it prepended a zero and located the ends with `list.index`, which picks the
wrong frame when a value repeats; and its second-difference features were zeroed
whenever the first-difference rises or falls were empty.
"""

import numpy as np

FEATURE_NAMES = (
    "lifetime", "max_intensity", "background", "totaldisp", "max_msd",
    "avg_rise", "avg_dec", "risevsdec", "avg_mom_rise", "avg_mom_dec", "risevsdec_mom",
)
NUM_FEATURES = len(FEATURE_NAMES)


def step_statistics(values):
    """(mean rising step, mean falling step, rising/falling count ratio) of the
    differences of `values`; 0 where there is nothing to average or divide by."""
    steps = np.diff(np.asarray(values, np.float64))
    rises, falls = steps[steps >= 0], steps[steps < 0]
    mean_rise = float(rises.mean()) if rises.size else 0.0
    mean_fall = float(falls.mean()) if falls.size else 0.0
    ratio = rises.size / falls.size if falls.size else 0.0
    return mean_rise, mean_fall, float(ratio)


def displacement_statistics(positions):
    """(end-to-end displacement, maximum MSD over lags 1..T//2) of (T, 2) positions;
    frames with non-finite positions are left out. Zeros for fewer than 2 positions."""
    positions = np.asarray(positions, np.float64)
    valid = np.all(np.isfinite(positions), axis=1)
    if valid.sum() < 2:
        return 0.0, 0.0
    finite = positions[valid]
    total = float(np.linalg.norm(finite[-1] - finite[0]))
    # squared distance of every pair of frames, averaged per lag (frame j - frame i)
    first, second = np.triu_indices(len(positions), 1)
    lags = second - first
    squared = np.sum((positions[second] - positions[first]) ** 2, axis=1)
    keep = np.isfinite(squared) & (lags <= max(1, len(positions) // 2))
    sums = np.bincount(lags[keep], squared[keep])
    counts = np.bincount(lags[keep])
    with np.errstate(invalid="ignore"):
        msd = sums[counts > 0] / counts[counts > 0]
    max_msd = float(msd.max()) if msd.size else 0.0
    return total, max_msd


def track_features(clathrin, background=None, positions=None, *, lifetime_s=None, frame_interval_s=1.0,
                   start_buffer=None, end_buffer=None, total_displacement=None, msd=None):
    """The 11 features (float32, in FEATURE_NAMES order) of one track.

    `clathrin` and `background` are per-frame amplitudes; `positions` (T, 2) pixels;
    `lifetime_s` defaults to frames × frame_interval_s; buffers are the clathrin
    amplitudes the tracker recorded before and after the track; `total_displacement`
    and `msd` are the tracker's own motion analysis, used when given.
    """
    clathrin = np.asarray(clathrin, np.float64)
    peak = int(np.argmax(clathrin))
    lifetime = float(lifetime_s) if lifetime_s is not None else len(clathrin) * float(frame_interval_s)
    peak_background = float(np.asarray(background, np.float64)[peak]) if background is not None else 0.0
    if total_displacement is not None and msd is not None and np.size(msd):
        displacement, max_msd = float(total_displacement), float(np.nanmax(msd))
    elif positions is not None:
        displacement, max_msd = displacement_statistics(positions)
    else:
        displacement, max_msd = 0.0, 0.0
    parts = [np.asarray(part, np.float64).ravel() for part in (start_buffer, clathrin, end_buffer) if part is not None]
    extended = np.concatenate(parts)
    extended = extended[np.isfinite(extended)]
    first = step_statistics(extended)
    second = step_statistics(np.diff(extended))
    return np.array([lifetime, float(clathrin[peak]), peak_background, displacement, max_msd, *first, *second],
                    np.float32)


def auxilin_positive(pvalues, cutoff=0.05, consecutive=3, short_track_frames=0):
    """True when `consecutive` frames in a row have an auxilin detection p-value at or
    below `cutoff`, the run starting in the second half of the track.

    Tracks shorter than `short_track_frames` need one frame fewer in the run (the
    study's code did this for tracks under 20 frames; 0 turns it off). Non-finite
    p-values count as not significant.
    """
    pvalues = np.asarray(pvalues, np.float64)
    frames = len(pvalues)
    needed = consecutive - 1 if frames < short_track_frames else consecutive
    needed = max(1, needed)
    if frames < needed:
        return False
    significant = np.where(np.isfinite(pvalues), pvalues <= cutoff, False).astype(np.int64)
    run_sums = np.convolve(significant, np.ones(needed, np.int64), mode="valid")
    starts = np.flatnonzero(run_sums == needed)
    return bool(np.any(starts >= frames / 2))
