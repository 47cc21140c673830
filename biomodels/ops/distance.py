"""Signed distance maps of two touching cells and the immunological synapse between
them (DeepIS): the network's target and the post-processing of its prediction."""

import numpy as np
from scipy import ndimage

BACKGROUND, CAR_T, TARGET = 0, 1, 2


def signed_distance(labels, clip=None):
    """float32 volume from a 0/1/2 label volume: inside the CAR-T cell (1) the Euclidean
    distance in voxels to the nearest voxel outside it (positive), inside the target cell
    (2) the same distance negated, zero outside both; magnitudes clipped at `clip`."""
    labels = np.asarray(labels)
    distance = np.zeros(labels.shape, np.float32)
    for value, sign in ((CAR_T, 1.0), (TARGET, -1.0)):
        inside = labels == value
        if inside.any():
            distance[inside] = sign * ndimage.distance_transform_edt(inside)[inside]
    if clip is not None:
        np.clip(distance, -clip, clip, out=distance)
    return distance


def labels_from_distance(distance, threshold=0.5):
    """0/1/2 labels: CAR-T where the distance exceeds `threshold` (half a voxel), target
    where it is below -threshold."""
    distance = np.asarray(distance)
    labels = np.zeros(distance.shape, np.uint8)
    labels[distance > threshold] = CAR_T
    labels[distance < -threshold] = TARGET
    return labels


def ball(radius, ndim=3):
    """A boolean ball of `radius` voxels as a structuring element."""
    grid = np.indices((2 * radius + 1,) * ndim) - radius
    return np.sum(grid**2, axis=0) <= radius**2


def synapse_mask(labels, dilation=2):
    """The immunological synapse: where the CAR-T and target masks, each dilated by a
    ball of `dilation` voxels, overlap."""
    structure = ball(dilation, np.ndim(labels))
    car_t = ndimage.binary_dilation(labels == CAR_T, structure)
    target = ndimage.binary_dilation(labels == TARGET, structure)
    return car_t & target


def surface(mask):
    """The voxels of `mask` removed by a one-voxel erosion."""
    return mask & ~ndimage.binary_erosion(mask)
