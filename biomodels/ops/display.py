"""Numpy renderings of arrays for people (TensorBoard images each epoch, montages)."""

import numpy as np


def gray_rgb(images):
    """uint8 [..., 3] of float images, stretched between their joint 1st and 99th percentiles."""
    images = np.asarray(images)
    low, high = np.percentile(images, [1, 99])
    gray = (np.clip((images - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
    return np.repeat(gray[..., np.newaxis], 3, axis=-1)
