"""Synthetic fluorescence images of touching cells in the layout of the CELLULAR data
set: `images/<name>.tif` (2 channels: cytoplasm, nucleus; 16-bit) and
`masks/<name>/<class>/<object>.png`, one binary PNG per cell.

Cells are star-shaped (a circle of random radius with a wavy outline), packed so that
many touch: every pixel belongs to the cell whose outline it lies deepest inside.
Each cell has a nucleus off-centre in the second channel. Images are either fed or
starved; most cells follow their image's condition, and starved cells carry many more
bright autophagosome puncta in the cytoplasm. Cells cut by the image border are
labelled `unidentified`, as annotators did with cells they could not judge. Uneven
illumination, a background offset, blur and Poisson-Gaussian noise are added.
Mean diameter is about 30 pixels, Cellpose's reference size.
"""

import os

import numpy as np
from scipy import ndimage

from biomodels.pipelines.readers import write_imagej_tiff, write_png

VERSION = 1
CLASSES = ("fed", "starved", "unidentified")
#: cells placed per pixel: 45 in a 256×256 image, where about 40 fit
CELLS_PER_PIXEL = 45 / 256**2


#: the outline's three waves add at most this fraction to a cell's radius
WAVE = 0.12
WAVES = (2, 3, 5)


def cell_labels(rng, shape, count, radius_range=(11.0, 19.0)):
    """(int32 labels with touching star-shaped cells, centres [N, 2], radii [N]). Time
    linear in the image's size: placements are checked against the cells of nearby grid
    squares only, and each cell is drawn in its own box."""
    height, width = shape
    centres, radii = [], []
    # close packing: neighbours may overlap by a third of their radii, so many touch;
    # cells farther apart than `reach` never conflict, so a grid of that size finds all that may
    reach = 0.68 * 2 * radius_range[1]
    grid = {}
    for _ in range(count * 40):
        if len(centres) == count:
            break
        radius = rng.uniform(*radius_range)
        centre = rng.uniform([-radius * 0.3, -radius * 0.3], [height + radius * 0.3, width + radius * 0.3])
        square = (int(np.floor(centre[0] / reach)), int(np.floor(centre[1] / reach)))
        nearby = [index for dy in (-1, 0, 1) for dx in (-1, 0, 1) for index in grid.get((square[0] + dy, square[1] + dx), ())]
        if all(np.hypot(*(centre - centres[i])) > 0.68 * (radius + radii[i]) for i in nearby):
            grid.setdefault(square, []).append(len(centres))
            centres.append(centre)
            radii.append(radius)
    centres, radii = np.array(centres), np.array(radii)
    best = np.full(shape, 1.0, np.float32)
    labels = np.zeros(shape, np.int32)
    for index, (centre, radius) in enumerate(zip(centres, radii), start=1):
        waves = [(rng.uniform(0, WAVE), k, rng.uniform(0, 2 * np.pi)) for k in WAVES]
        extent = radius * (1 + WAVE * len(WAVES)) + 1  # no pixel beyond is inside the outline
        top, left = max(0, int(centre[0] - extent)), max(0, int(centre[1] - extent))
        bottom, right = min(height, int(centre[0] + extent) + 2), min(width, int(centre[1] + extent) + 2)
        if top >= bottom or left >= right:
            continue
        yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32)
        dy, dx = yy - centre[0], xx - centre[1]
        angle = np.arctan2(dy, dx)
        outline = radius * (1 + sum(amplitude * np.cos(k * angle + phase) for amplitude, k, phase in waves))
        depth = np.hypot(dy, dx) / outline  # < 1 inside the outline
        box = (slice(top, bottom), slice(left, right))
        inside = depth < best[box]
        labels[box][inside] = index
        best[box][inside] = depth[inside]
    labels = _keep_largest_parts(labels)
    return labels, centres, radii


def _keep_largest_parts(labels):
    """Relabel 1..N, keeping each cell's largest connected part and cells of 30+ pixels."""
    out = np.zeros_like(labels)
    next_id = 1
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None:
            continue
        parts, count = ndimage.label(labels[region] == index)
        if count == 0:
            continue
        sizes = np.bincount(parts.ravel())[1:]
        if sizes.max() < 30:
            continue
        out[region][parts == np.argmax(sizes) + 1] = next_id
        next_id += 1
    return out


def render(rng, labels, centres, starved_cells):
    """float32 (H, W, 2) image: cytoplasm with puncta, nuclei."""
    height, width = labels.shape
    cytoplasm = np.zeros(labels.shape, np.float32)
    nuclei = np.zeros(labels.shape, np.float32)
    yy, xx = np.mgrid[:height, :width]
    count = labels.max()
    brightness = rng.uniform(0.5, 1.0, count + 1)
    brightness[0] = 0
    cytoplasm += brightness[labels]
    puncta = np.zeros(labels.shape, np.float32)
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None:
            continue
        cell = labels[region] == index  # the cell's box only: linear in the image's size
        pixels = np.argwhere(cell) + [region[0].start, region[1].start]
        centre = pixels.mean(axis=0)
        spread = np.sqrt(len(pixels) / np.pi)
        nucleus_centre = centre + rng.normal(0, 0.15 * spread, 2)
        axes = spread * rng.uniform(0.3, 0.45, 2)
        inside = (((yy[region] - nucleus_centre[0]) / axes[0]) ** 2
                  + ((xx[region] - nucleus_centre[1]) / axes[1]) ** 2 < 1)
        nuclei[region][inside & cell] = rng.uniform(0.6, 1.0)
        number = rng.poisson(14 if index in starved_cells else 2)
        for y, x in pixels[rng.integers(0, len(pixels), number)]:
            puncta[y, x] += rng.uniform(3, 6)
    cytoplasm += ndimage.gaussian_filter(puncta, 1.2) * 2.5
    # cell edges are dimmer than cell bodies, so touching cells stay distinguishable
    edges = ndimage.morphological_gradient(labels, size=3) > 0
    cytoplasm[edges] *= 0.7
    image = np.stack([ndimage.gaussian_filter(cytoplasm, 1.0), ndimage.gaussian_filter(nuclei, 1.5)], axis=-1)
    tilt = 0.6 + 0.8 * (yy / height * rng.uniform(-0.5, 0.5) + xx / width * rng.uniform(-0.5, 0.5) + 0.5)
    image = image * tilt[..., np.newaxis] + rng.uniform(0.05, 0.15)
    photons = rng.uniform(60, 300)
    image = rng.poisson(np.clip(image, 0, None) * photons) / photons + rng.normal(0, 0.02, image.shape)
    return np.clip(image, 0, None).astype(np.float32)


def write_image(directory, name, rng, shape=(256, 256)):
    """Write one image and its per-object masks; returns {class: object count}."""
    cells = max(3, round(CELLS_PER_PIXEL * shape[0] * shape[1]))
    labels, centres, _ = cell_labels(rng, shape, cells)
    starved_image = rng.random() < 0.5
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist()) - {0}
    classes = {}
    for index in range(1, labels.max() + 1):
        if index in border:
            classes[index] = "unidentified"
        else:
            follows_image = rng.random() < 0.85
            classes[index] = "starved" if starved_image == follows_image else "fed"
    starved = {index for index, name_ in classes.items() if name_ == "starved"}
    image = render(rng, labels, centres, starved)
    # channels first as an ImageJ hyperstack, so Fiji opens a 2-channel image
    pixels = np.round(np.clip(image / image.max(), 0, 1) * 60000).astype(np.uint16)
    write_imagej_tiff(os.path.join(directory, "images", f"{name}.tif"), np.moveaxis(pixels, -1, 0), "CYX",
                      labels=("cytoplasm", "nucleus"))
    counts = {}
    for index, class_name in classes.items():
        folder = os.path.join(directory, "masks", name, class_name)
        os.makedirs(folder, exist_ok=True)
        write_png(os.path.join(folder, f"{name}_{index:03d}.png"), ((labels == index) * 255).astype(np.uint8))
        counts[class_name] = counts.get(class_name, 0) + 1
    return counts


def write_dataset(directory, count, seed, shape=(256, 256)):
    """`count` images named like CELLULAR's (condition, well, field)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(directory, "images"), exist_ok=True)
    for index in range(count):
        well = f"{'ABCDEFGH'[index % 8]}{index // 8 + 1:02d}"
        write_image(directory, f"SY_{well}_{index:03d}", rng, shape)
