"""Synthetic Z-stacks of separate round cells (spheres and ellipsoids, bright on a dim
noisy background) and 2-D images of discs, their slices, with the training targets of a
Cellpose network: what the 3-D segmentation (tasks.cellular.stacks) is tested and
measured on, against Cellpose's own do_3D and stitching.
"""

import numpy as np


def disc_image(rng, size=64, tries=12, radius_range=(3.0, 9.0)):
    """(float32 image [size, size], int32 labels): up to `tries` discs that do not
    overlap, brightness 0.6-1 above a background of 0.1 ± 0.03."""
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    image = rng.normal(0.1, 0.03, (size, size))
    for _ in range(tries):
        radius = rng.uniform(*radius_range)
        cy, cx = rng.uniform(radius, size - radius, 2)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
        if not (labels[inside] > 0).any():
            labels[inside] = labels.max() + 1
            image[inside] += rng.uniform(0.6, 1.0)
    return image.astype(np.float32), labels


def disc_training_set(rng, count=64, size=64):
    """(normalised images [count, size, size, 2] (the second channel zeros), Cellpose
    targets [count, size, size, 5] of ops.cellpose_parts.TARGET_PARTS) of disc images,
    for training a CellposeNet with CellposeLoss."""
    from biomodels.ops.flows import masks_to_flows
    from biomodels.tasks.cellular import data

    images, targets = [], []
    for _ in range(count):
        image, labels = disc_image(rng, size)
        image = data.normalise(image[..., np.newaxis])[..., 0]
        images.append(np.stack([image, np.zeros_like(image)], axis=-1))
        targets.append(np.concatenate([masks_to_flows(labels).transpose(1, 2, 0), (labels > 0)[..., None],
                                       labels[..., None], np.zeros_like(labels)[..., None]], -1))
    return np.stack(images).astype(np.float32), np.stack(targets).astype(np.float32)


def blob_stack(rng, shape=(20, 64, 64), anisotropy=1.0, count=10, radius_range=(5.0, 8.0), tries=None):
    """(float32 stack [Z, Y, X] (background about 100, cells 700-1100), int32 labels): up
    to `count` spheres and ellipsoids (radii in `radius_range` pixels, stretched up to
    1.4× in x), at least 2 pixels apart, in a stack whose slices are `anisotropy` pixels
    apart; `tries` placements at most (default 6 × count)."""
    depth = shape[0] * anisotropy
    labels = np.zeros(shape, np.int32)
    image = rng.normal(0.1, 0.03, shape)
    placed = 0
    for _ in range(tries or 6 * count):
        radii = rng.uniform(*radius_range, 3) * np.array([1.0, 1.0, rng.uniform(1.0, 1.4)])
        centre = [rng.uniform(r, n - r) for r, n in zip(radii, (depth, *shape[1:]))]
        # the box around the cell and its margin of 2 pixels, in slices and pixels
        box = tuple(slice(max(0, int((c - r - 2) / step)), int((c + r + 2) / step) + 1)
                    for c, r, step in zip(centre, radii, (anisotropy, 1.0, 1.0)))
        grid = np.meshgrid(*[np.arange(part.start, min(part.stop, n)) * step
                             for part, n, step in zip(box, shape, (anisotropy, 1.0, 1.0))], indexing="ij")

        def within(margin):
            return sum(((axis - middle) / (r + margin)) ** 2 for axis, middle, r in zip(grid, centre, radii)) <= 1

        region = labels[box]
        if (region[within(2.0)] > 0).any():
            continue
        inside = within(0.0)
        placed += 1
        region[inside] = placed
        image[box][inside] += rng.uniform(0.6, 1.0)
        if placed == count:
            break
    return (image * 1000).astype(np.float32), labels
