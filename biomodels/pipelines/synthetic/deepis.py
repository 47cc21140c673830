"""Synthetic refractive-index tomograms of a CAR-T cell pressed against a target cell.

Each volume holds two touching cells in medium of index 1.337: a smaller CAR-T cell and a
larger target cell, ellipsoids whose surfaces are made irregular by smooth random
fields; where they meet, the one nearer its own centre wins, which flattens the contact
into an interface. Cytoplasm has an index of 1.36-1.375 with a smooth texture, the
nucleus (an off-centre ellipsoid) 1.38-1.39. An anisotropic blur, wider along Z, stands
in for the missing cone of optical diffraction tomography; Gaussian noise is added.
Labels: 0 medium, 1 CAR-T, 2 target. Volumes are written as TIFF stacks (RI float32,
labels uint8) with their voxel size, and read back through the task's reader.
"""

import os

import numpy as np
from scipy import ndimage

from biomodels.pipelines.readers import write_tiff_volume

VERSION = 1
MEDIUM_INDEX = 1.337
VOXEL_SIZE_UM = (0.2185, 0.2185, 0.2185)  # 2 voxels = 437 nm, as in the study


def smooth_field(rng, shape, sigma):
    """Zero-mean, unit-variance smooth noise."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (field - field.mean()) / max(field.std(), 1e-9)


def volume(rng, shape):
    """(refractive index float32 (Z, Y, X), labels uint8 (Z, Y, X))."""
    depth, height, width = shape
    grid = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij"), axis=-1)
    size = min(height, width)
    target_radius = size * rng.uniform(0.22, 0.28)
    car_t_radius = target_radius * rng.uniform(0.6, 0.8)
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([0.0, np.sin(angle), np.cos(angle)])
    centre = np.array([depth / 2, height / 2, width / 2]) + rng.normal(0, size * 0.03, 3) * [0.3, 1, 1]
    gap = (target_radius + car_t_radius) * rng.uniform(0.8, 0.9)  # < sum of radii: they press together
    target_centre = centre - direction * gap * car_t_radius / (target_radius + car_t_radius)
    car_t_centre = centre + direction * gap * target_radius / (target_radius + car_t_radius)
    squash = min(1.0, depth / (2.4 * target_radius))  # cells sit flatter along Z in thin volumes

    def level(cell_centre, radius):
        scale = np.array([radius * squash * rng.uniform(0.85, 1.0), radius * rng.uniform(0.9, 1.1), radius * rng.uniform(0.9, 1.1)])
        distance = np.sqrt(np.sum(((grid - cell_centre) / scale) ** 2, axis=-1))
        return distance + 0.08 * smooth_field(rng, shape, sigma=size / 10)

    target_level, car_t_level = level(target_centre, target_radius), level(car_t_centre, car_t_radius)
    labels = np.zeros(shape, np.uint8)
    labels[(target_level < 1) & (target_level <= car_t_level)] = 2
    labels[(car_t_level < 1) & (car_t_level < target_level)] = 1

    index = np.full(shape, MEDIUM_INDEX)
    for value, cell_level in ((1, car_t_level), (2, target_level)):
        inside = labels == value
        index[inside] = rng.uniform(1.36, 1.375) + 0.003 * smooth_field(rng, shape, sigma=2)[inside]
        nucleus = inside & (cell_level < rng.uniform(0.5, 0.65)) & (
            np.sum((grid - grid[inside].mean(axis=0) - rng.normal(0, 1.5, 3)) ** 2, axis=-1) < (size * 0.15) ** 2)
        index[nucleus] = rng.uniform(1.38, 1.39) + 0.002 * smooth_field(rng, shape, sigma=1.5)[nucleus]
    index = ndimage.gaussian_filter(index, sigma=(1.6, 0.6, 0.6))  # missing cone: elongated along Z
    index += rng.normal(0, 0.0015, shape)
    return index.astype(np.float32), labels


def write_dataset(directory, count, seed, shape):
    """Write `count` volumes as NAME.tif with NAME_labels.tif; returns the RI paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        refractive_index, labels = volume(rng, tuple(shape))
        stem = os.path.join(directory, f"cells_{index:03d}")
        write_tiff_volume(f"{stem}.tif", refractive_index, VOXEL_SIZE_UM)
        write_tiff_volume(f"{stem}_labels.tif", labels, VOXEL_SIZE_UM)
        paths.append(f"{stem}.tif")
    return paths
