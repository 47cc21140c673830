"""Synthetic clathrin-coated-pit tracks from several cells, at one frame per second.

Four kinds of track, with the shapes seen in TIRF movies of clathrin and auxilin:

- coated pits that bud (about 13 %): clathrin grows over most of the lifetime (20 s
  to a few minutes), plateaus, and drops at release; auxilin bursts for a few frames
  at the end, when the coat comes off. Some bursts are weak and fail the auxilin rule.
- abortive pits: short (4-30 s), dim, grow and fade without an auxilin burst; a few
  show an auxilin flicker early in the lifetime, which the rule ignores.
- detection noise: 1-8 frames of barely visible signal (the 1-frame ones are skipped
  by the readers, and counted).
- plaques: long-lived (1.5-5 min), bright, flat, no burst.

Amplitudes are background-subtracted photon counts with Poisson and read noise; the
auxilin detection p-value of each frame is a one-sided z-test of its amplitude against
the noise, as a point-source detector reports it. Positions wander by confined
diffusion. Labels are not written: the readers apply the auxilin rule to the p-values,
as for real data.

Cells cycle through the three input formats (CSV, lifetimeData.mat v7.3,
ProcessedTracks.mat v5), so the built-in data set goes through every reader.
"""

import os

import numpy as np
from scipy.special import ndtr

from biomodels.pipelines.track_files import Track
from biomodels.pipelines.track_writers import write_lifetime_data, write_processed_tracks, write_track_csv

VERSION = 1
MAX_FRAMES = 300
BUFFER_FRAMES = 5
KINDS = ("pit", "abortive", "noise", "plaque")
KIND_FRACTIONS = (0.13, 0.47, 0.28, 0.12)
FORMATS = ("csv", "lifetime_data", "processed_tracks")


def cell_tracks(rng, cell, count):
    """`count` tracks of one cell."""
    background_level = rng.uniform(80, 140)
    kinds = rng.choice(len(KINDS), size=count, p=KIND_FRACTIONS)
    return [_track(rng, cell, index + 1, KINDS[kind], background_level) for index, kind in enumerate(kinds)]


def _track(rng, cell, number, kind, background_level):
    if kind == "pit":
        frames = int(np.clip(rng.lognormal(np.log(55), 0.45), 20, MAX_FRAMES))
        clathrin, auxilin = _pit(rng, frames)
    elif kind == "abortive":
        frames = int(rng.integers(4, 31))
        clathrin = rng.uniform(25, 80) * np.sin(np.pi * (np.arange(frames) + 0.5) / frames) ** rng.uniform(0.7, 1.5)
        auxilin = np.zeros(frames)
        if rng.random() < 0.15:  # an early flicker, in the first half: not a release
            start = int(rng.integers(0, max(1, frames // 2 - 3)))
            auxilin[start:start + 3] = rng.uniform(30, 60)
    elif kind == "noise":
        frames = int(rng.integers(1, 9))
        clathrin, auxilin = np.full(frames, rng.uniform(5, 25)), np.zeros(frames)
    else:
        frames = int(rng.integers(90, MAX_FRAMES + 1))
        clathrin = rng.uniform(180, 400) * (1 + 0.1 * np.sin(np.arange(frames) / rng.uniform(8, 20)))
        auxilin = np.zeros(frames)
    background = background_level + rng.normal(0, 2, frames)
    observed_clathrin = _counts(rng, clathrin, background)
    auxilin_background = 0.3 * background_level
    observed_auxilin = _counts(rng, auxilin, np.full(frames, auxilin_background))
    auxilin_noise = np.sqrt(auxilin_background + 25.0)
    pvalues = 1.0 - ndtr(observed_auxilin / auxilin_noise)
    step = {"pit": 0.15, "abortive": 0.25, "noise": 0.6, "plaque": 0.1}[kind]
    positions = rng.uniform(20, 480, size=2) + np.cumsum(rng.normal(0, step, size=(frames, 2)), axis=0)
    quiet = lambda: _counts(rng, np.zeros(BUFFER_FRAMES), np.full(BUFFER_FRAMES, background_level))  # noqa: E731
    return Track(
        cell=cell, track_id=str(number), clathrin=observed_clathrin, auxilin=observed_auxilin, background=background,
        auxilin_pval=pvalues, positions=positions, frame_interval_s=1.0, lifetime_s=float(frames),
        start_buffer=quiet(), end_buffer=quiet(),
    )


def _pit(rng, frames):
    """Clathrin growth-plateau-release and the auxilin burst at release."""
    time = np.arange(frames, dtype=np.float64)
    grow_until = frames * rng.uniform(0.5, 0.8)
    release_at = frames - rng.uniform(2, 5)
    peak = rng.lognormal(np.log(140), 0.35)
    growth = 1 - np.exp(-3 * time / grow_until)
    release = 1 / (1 + np.exp((time - release_at) / rng.uniform(0.6, 1.5)))
    clathrin = peak * growth * release
    strength = rng.uniform(5, 90) if rng.random() < 0.15 else rng.uniform(50, 140)
    centre = release_at + rng.uniform(-1.0, 1.0)
    auxilin = strength * np.exp(-0.5 * ((time - centre) / rng.uniform(1.2, 2.5)) ** 2)
    return clathrin, auxilin


def _counts(rng, signal, background):
    """Background-subtracted counts: Poisson shot noise plus Gaussian read noise."""
    expected = np.maximum(signal + background, 0)
    return rng.poisson(expected) - background + rng.normal(0, 5, len(signal))


def write_dataset(directory, cells, seed, tracks_per_cell=600):
    """Write `cells` cells in the cmeAnalysis folder layout and as CSV; returns the
    files written."""
    rng = np.random.default_rng(seed)
    written = []
    for index in range(cells):
        name = f"Cell{index + 1}_1s"
        tracks = cell_tracks(rng, name, tracks_per_cell)
        kind = FORMATS[index % len(FORMATS)]
        if kind == "csv":
            path = write_track_csv(os.path.join(directory, name, "tracks.csv"), tracks)
        elif kind == "lifetime_data":
            path = write_lifetime_data(os.path.join(directory, name, "TagRFP", "Analysis", "lifetimeData.mat"), tracks,
                                       frames=MAX_FRAMES)
        else:
            path = write_processed_tracks(os.path.join(directory, name, "TagRFP", "Tracking", "ProcessedTracks.mat"), tracks)
        written.append(path)
    return written
