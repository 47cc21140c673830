"""Synthetic cellular cryo-electron tomograms with voxel labels.

Each tomogram holds, at a realistic (low) signal-to-noise ratio: single lipid membranes
(vesicles), double membranes (two bilayers about 14 nm apart, as in mitochondria or the
nuclear envelope), hollow microtubules (25 nm across, 5 nm walls) lying roughly in the
section plane, ribosome-like dense particles (about 25 nm) and, in some tomograms, a
carbon edge: a thick dense region with a sharp boundary. Density is smeared along Z by a
blur standing in for the missing wedge, then noise is added; dense matter is dark, as in
a reconstruction. Labels: 0 background, 1 microtubule, 2 ribosome, 3 double membrane,
4 single membrane, 5 carbon edge.
"""

import os

import numpy as np
from scipy import ndimage

VERSION = 2
VOXEL_NM = 2.0
DEFAULT_SHAPE = (24, 256, 256)

BACKGROUND, MICROTUBULE, RIBOSOME, DOUBLE_MEMBRANE, SINGLE_MEMBRANE, CARBON_EDGE = range(6)


def tomogram(rng, shape=DEFAULT_SHAPE, noise=0.6):
    """One synthetic tomogram: (density float32 (Z, Y, X), labels uint8 (Z, Y, X))."""
    density = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    if rng.random() < 0.6:
        _carbon_edge(rng, density, labels)
    for _ in range(rng.integers(1, 3)):
        _place(rng, density, labels, _double_membrane)
    for _ in range(rng.integers(2, 5)):
        _place(rng, density, labels, _vesicle)
    for _ in range(rng.integers(2, 5)):
        _place(rng, density, labels, _microtubule)
    for _ in range(rng.integers(15, 35)):
        _place(rng, density, labels, _ribosome)
    density = ndimage.gaussian_filter1d(density, sigma=1.5, axis=0)  # missing-wedge elongation
    density += _ice(rng, shape)
    density += rng.normal(0.0, noise, shape).astype(np.float32)
    density = ndimage.gaussian_filter(density, sigma=(0, 0.6, 0.6))  # transfer-function low-pass
    return (-density).astype(np.float32), labels


def write_dataset(directory, count, seed, shape=DEFAULT_SHAPE):
    """Write `count` tomograms as NAME.mrc with NAME_labels.mrc into `directory`."""
    from biomodels.pipelines.readers import write_mrc

    rng = np.random.default_rng(seed)
    voxel_angstrom = (VOXEL_NM * 10.0,) * 3
    names = []
    for index in range(count):
        density, labels = tomogram(rng, shape)
        name = f"synthetic_tomogram_{index:03d}"
        write_mrc(os.path.join(directory, f"{name}.mrc"), density, voxel_angstrom)
        write_mrc(os.path.join(directory, f"{name}_labels.mrc"), labels.astype(np.int8), voxel_angstrom)
        names.append(name)
    return names


def _place(rng, density, labels, make, attempts=20):
    """Draw an object with `make` until it lands on free space, then paint it."""
    for _ in range(attempts):
        box, object_density, object_labels = make(rng, density.shape)
        region = labels[box]
        if np.any(region[object_labels > 0] > 0):
            continue
        density[box] += object_density
        region[object_labels > 0] = object_labels[object_labels > 0]
        return True
    return False


def _grid(shape, centre, half):
    """Slices of the box of half-size `half` around `centre`, clipped, and its coordinates."""
    box = tuple(slice(max(0, int(c - h)), min(n, int(c + h) + 1)) for c, h, n in zip(centre, half, shape))
    coords = np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float32) - c for s, c in zip(box, centre)], indexing="ij")
    return box, coords


def _shell(distance, radius, width=1.0):
    return np.exp(-0.5 * ((distance - radius) / width) ** 2)


def _random_centre(rng, shape, margin=0):
    return np.array([rng.uniform(shape[0] * 0.25, shape[0] * 0.75)] + [rng.uniform(margin, n - margin) for n in shape[1:]])


def _ellipsoid_distance(coords, axes):
    """A distance-like radius that is exact on the surface of an ellipsoid of `axes`."""
    scaled = np.sqrt(sum((c / a) ** 2 for c, a in zip(coords, axes)))
    return scaled * np.mean(axes)


def _vesicle(rng, shape):
    radius = rng.uniform(12, 40)
    axes = radius * rng.uniform(0.85, 1.15, 3)
    centre = _random_centre(rng, shape)
    box, coords = _grid(shape, centre, axes + 4)
    r = _ellipsoid_distance(coords, axes)
    object_density = 0.9 * _shell(r, radius)
    object_labels = np.where(np.abs(r - radius) <= 2.5, SINGLE_MEMBRANE, BACKGROUND).astype(np.uint8)
    return box, object_density, object_labels


def _double_membrane(rng, shape):
    radius = rng.uniform(30, 60)
    axes = radius * np.array([1.0, *rng.uniform(0.7, 1.3, 2)])
    centre = _random_centre(rng, shape)
    box, coords = _grid(shape, centre, axes * 1.2 + 4)
    r = _ellipsoid_distance(coords, axes)
    spacing = 7.0  # about 14 nm between the two bilayers
    object_density = 0.9 * (_shell(r, radius) + _shell(r, radius - spacing)) + 0.25 * (r < radius - spacing)
    inner = (r >= radius - spacing - 2.0) & (r <= radius + 2.0)
    object_labels = np.where(inner, DOUBLE_MEMBRANE, BACKGROUND).astype(np.uint8)
    return box, object_density, object_labels


def _microtubule(rng, shape):
    outer = 12.5 / VOXEL_NM
    length = rng.uniform(80, 300)
    angle = rng.uniform(0, np.pi)
    tilt = rng.uniform(-0.05, 0.05)
    direction = np.array([np.sin(tilt), np.cos(tilt) * np.sin(angle), np.cos(tilt) * np.cos(angle)])
    centre = _random_centre(rng, shape)
    half = np.abs(direction) * length / 2 + outer + 3
    box, coords = _grid(shape, centre, half)
    along = sum(c * d for c, d in zip(coords, direction))
    radial = np.sqrt(np.maximum(sum(c * c for c in coords) - along**2, 0.0))
    inside_length = np.abs(along) <= length / 2
    wall = (radial >= outer - 2.5) & (radial <= outer)
    object_density = 1.0 * ndimage.gaussian_filter((wall & inside_length).astype(np.float32), 0.7)
    object_labels = np.where((radial <= outer + 1.0) & inside_length, MICROTUBULE, BACKGROUND).astype(np.uint8)
    return box, object_density, object_labels


def _ribosome(rng, shape):
    radius = rng.uniform(5.5, 7.0)
    centre = _random_centre(rng, shape, margin=8)
    box, coords = _grid(shape, centre, np.full(3, radius + 3))
    r = np.sqrt(sum(c * c for c in coords))
    lumps = sum(
        np.exp(-0.5 * sum((c - o) ** 2 for c, o in zip(coords, rng.normal(0, radius / 3, 3))) / (radius / 2.2) ** 2)
        for _ in range(4)
    )
    object_density = 1.1 * np.clip(lumps, 0, 1.5) * (r <= radius + 1)
    object_labels = np.where(r <= radius, RIBOSOME, BACKGROUND).astype(np.uint8)
    return box, object_density, object_labels


def _carbon_edge(rng, density, labels):
    """A dense carbon film covering one side of the field, with a gently curved edge."""
    _, ny, nx = density.shape
    angle = rng.uniform(0, 2 * np.pi)
    normal = np.array([np.cos(angle), np.sin(angle)])
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float32)
    offset = (y - ny / 2) * normal[0] + (x - nx / 2) * normal[1]
    along = -(y - ny / 2) * normal[1] + (x - nx / 2) * normal[0]
    edge = rng.uniform(0.15, 0.35) * min(ny, nx) + 10 * np.sin(along / rng.uniform(30, 80))
    inside = offset > edge
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (ny, nx)), 3).astype(np.float32)
    film = inside * (1.6 + 0.6 * texture / (texture.std() + 1e-6))
    density += film[np.newaxis]
    labels[:, inside] = CARBON_EDGE


def _ice(rng, shape):
    """Slowly varying thickness of the vitreous ice."""
    field = ndimage.gaussian_filter(rng.normal(0, 1, shape[1:]), 40)
    return (0.3 * field / (field.std() + 1e-6))[np.newaxis].astype(np.float32)
