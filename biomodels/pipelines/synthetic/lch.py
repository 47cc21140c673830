"""Synthetic label-free single-cell crops from several "cell lines" of high or low
metastatic efficiency, in the layout of Live Cell Histology: 256×256 8-bit crops, one
cell centred in each, metadata in the file names, and a CSV of each cell type's
efficiency.

A cell is a star-shaped body (an ellipse with a wavy outline) drawn in phase-contrast
style: darker than the medium with a bright halo at its edge. Two things differ between
the classes, as the study's in-silico cells showed: high-efficiency cells extend more
and longer pseudopodia and scatter more light (bright granules inside the cell). Each
cell line draws its own rates around its class's, and its own nuisance settings (size,
brightness, focus) from ranges shared by both classes, so that only the morphology and
the scattering tell the classes apart; every cell then varies in size, orientation,
focus, illumination and noise. Most crops are PNG, every fifth one a TIFF.
"""

import csv
import os

import numpy as np
from scipy import ndimage

from biomodels.pipelines.readers import write_png, write_tiff

VERSION = 1
SIZE = 256
FILE_PATTERN = "{date}_{cell_type}_s{site}_t{time:03d}_p{position}_f{frame:03d}{suffix}"
EFFICIENCY_CSV = "efficiency.csv"


def cell_line(rng, name, high):
    """The settings one cell line's cells are drawn around."""
    return {
        "name": name, "high": bool(high),
        "pseudopodia": rng.uniform(3.0, 4.5) if high else rng.uniform(0.3, 1.0),
        "pseudopod_length": rng.uniform(0.8, 1.2) if high else rng.uniform(0.3, 0.5),
        "granules": rng.uniform(30, 45) if high else rng.uniform(18, 30),
        "radius": rng.uniform(33, 42),
        "background": rng.uniform(0.44, 0.52),
        "blur": rng.uniform(0.6, 1.2),
    }


def cell_image(rng, line):
    """One 256×256 float image in [0, 1] of a cell of `line`."""
    half = SIZE / 2
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) - half + rng.normal(0, 4, 2)[:, None, None]
    distance, angle = np.hypot(y, x), np.arctan2(y, x)
    # the body: an ellipse of random size, elongation and orientation with a wavy outline
    radius = line["radius"] * rng.lognormal(0, 0.15)
    elongation, orientation = rng.uniform(1.0, 1.5), rng.uniform(0, np.pi)
    relative = angle - orientation
    outline = radius / np.sqrt((np.cos(relative) / elongation ** 0.5) ** 2 + (np.sin(relative) * elongation ** 0.5) ** 2)
    for harmonic in (3, 4, 5):
        outline *= 1 + 0.04 * rng.normal() * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    # pseudopodia: narrow lobes of the outline
    for _ in range(rng.poisson(line["pseudopodia"])):
        direction = rng.uniform(-np.pi, np.pi)
        width = rng.uniform(0.10, 0.20)
        length = radius * line["pseudopod_length"] * rng.uniform(0.7, 1.3)
        offset = np.angle(np.exp(1j * (angle - direction)))
        outline = outline + length * np.exp(-0.5 * (offset / width) ** 2)
    # the same area as the body alone would have: the classes differ in shape, not size
    area = np.count_nonzero(distance < outline)
    outline = outline * np.sqrt(np.pi * radius ** 2 / max(area, 1))
    mask = (distance < outline).astype(np.float64)
    soft = ndimage.gaussian_filter(mask, 1.5)
    halo = np.clip(ndimage.gaussian_filter(mask, 5.0) - mask, 0, None)
    # light scattering: bright granules inside the cell
    granules = np.zeros_like(mask)
    inside = np.flatnonzero(ndimage.binary_erosion(mask > 0, iterations=3))
    if inside.size:
        spots = rng.choice(inside, size=rng.poisson(line["granules"]), replace=True)
        np.add.at(granules.reshape(-1), spots, rng.uniform(0.5, 1.0, len(spots)))
        granules = ndimage.gaussian_filter(granules, 1.6) * 12.0
    background = line["background"] * rng.uniform(0.85, 1.15)
    gradient = rng.normal(0, 0.04, 2)
    image = background + (gradient[0] * y + gradient[1] * x) / SIZE
    image = image - 0.16 * soft + 0.35 * halo + 0.35 * granules * soft
    image = ndimage.gaussian_filter(image, line["blur"] * rng.uniform(0.5, 1.5))
    image = image + rng.normal(0, rng.uniform(0.015, 0.035), image.shape)
    return np.clip(image, 0, 1)


def write_dataset(directory, num_cells, seed, num_lines=8):
    """`num_cells` crops spread evenly over `num_lines` cell lines (half of them high
    efficiency), and efficiency.csv; returns the cell lines' settings."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    highs = rng.permutation([index < num_lines // 2 for index in range(num_lines)])
    lines = [cell_line(rng, f"pdx{index + 1:02d}", high) for index, high in enumerate(highs)]
    with open(os.path.join(directory, EFFICIENCY_CSV), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["cell_type", "efficiency"])
        for line in lines:
            writer.writerow([line["name"], "high" if line["high"] else "low"])
    for index in range(num_cells):
        line = lines[index % num_lines]
        image = (cell_image(rng, line) * 255 + 0.5).astype(np.uint8)
        name = FILE_PATTERN.format(date=f"2017{1 + index % 12:02d}{1 + index % 28:02d}", cell_type=line["name"],
                                   site=1 + index % 3, time=index // num_lines, position=1 + index % 5,
                                   frame=index % 200, suffix=".tif" if index % 5 == 4 else ".png")
        path = os.path.join(directory, name)
        if name.endswith(".tif"):
            write_tiff(path, image)
        else:
            write_png(path, image)
    return lines
