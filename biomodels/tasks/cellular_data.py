"""Reading cell images and their instance masks for the cellular task.

Two layouts:
- CELLULAR: `images/<image>.<ext>` and `masks/<image>/<class>/<one PNG per object>`.
  Every object of every class goes into one instance label image (the published script
  kept only the last class folder read); overlapping pixels go to the smaller object,
  and the overlaps are counted in the manifest. Each object keeps its class.
- Cellpose's training folders: `NAME.tif` (or .png) beside `NAME_masks.tif` (or .png).

Images may be 2-D, channels-last or channels-first (up to 4 channels); `channels`
picks the cytoplasm and nucleus channels (indices beyond the image's are zero).
"""

import glob
import logging
import os

import numpy as np

from biomodels.errors import ConfigError, InputError
from biomodels.pipelines import readers

log = logging.getLogger(__name__)

#: what Cellpose writes beside an image (outputs, not inputs)
OUTPUT_SUFFIXES = ("_masks", "_flows", "_outlines", "_cp_masks", "_seg")
NO_CLASS = -1


def image_files(folder):
    """Images in `folder` that are not masks or outputs, sorted."""
    paths = sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(readers.IMAGE_SUFFIXES))
    return [p for p in paths if not os.path.splitext(os.path.basename(p))[0].endswith(OUTPUT_SUFFIXES)]


def read_cell_image(path, channels=(0, 1)):
    """float32 [H, W, len(channels)] of the chosen channels."""
    image = np.asarray(readers.read_image(path))
    if image.ndim == 2:
        image = image[..., np.newaxis]
    elif image.ndim == 3 and image.shape[0] <= 4 < min(image.shape[1:]) and image.shape[-1] > 4:
        image = np.moveaxis(image, 0, -1)  # channels first, as ImageJ writes multi-channel TIFF
    if image.ndim != 3 or image.shape[-1] > 4:
        raise InputError(path, f"expected a 2-D image with at most 4 channels, found shape {image.shape}")
    if image.shape[-1] == 4 and path.lower().endswith(".png"):
        image = image[..., :3]  # alpha
    readers.require_finite(path, image)
    if min(image.shape[:2]) < 8:
        raise InputError(path, f"is too small ({image.shape[1]}×{image.shape[0]})")
    if any(c < 0 for c in channels):
        raise ConfigError(f"channels must be non-negative indices, got {channels}")
    chosen = [image[..., c] if c < image.shape[-1] else np.zeros(image.shape[:2]) for c in channels]
    return np.stack(chosen, axis=-1).astype(np.float32)


def check_labels(path, labels):
    """int32 instance labels: integers, not negative, 2-D."""
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] in (3, 4) and path.lower().endswith(".png"):
        if not (np.all(labels[..., 0] == labels[..., 1]) and np.all(labels[..., 0] == labels[..., 2])):
            raise InputError(path, "is a colour image, not a label image")
        labels = labels[..., 0]
    if labels.ndim != 2:
        raise InputError(path, f"expected a 2-D label image, found shape {labels.shape}")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        readers.require_finite(path, labels)
        if not np.all(labels == np.round(labels)):
            raise InputError(path, "labels must be whole numbers (found fractional values)")
    if labels.size and labels.min() < 0:
        raise InputError(path, f"labels must not be negative (found {labels.min()})")
    if labels.size and labels.max() > np.iinfo(np.int32).max:
        raise InputError(path, "labels exceed the int32 range")
    return labels.astype(np.int32)


def relabel_sequential(labels):
    """Labels renumbered 1..N in ascending order of their ids; (labels, the old ids in that order)."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lookup = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.int32)
    lookup[ids] = np.arange(1, len(ids) + 1)
    return lookup[labels], ids


def class_folders(mask_dir, skip_classes):
    """{class name: sorted object PNGs} of one image's mask folder, skipped classes left out."""
    if not os.path.isdir(mask_dir):
        return {}
    folders = {}
    for entry in sorted(os.listdir(mask_dir)):
        folder = os.path.join(mask_dir, entry)
        if not os.path.isdir(folder):
            continue
        objects = sorted(glob.glob(os.path.join(folder, "*.png")))
        if not objects:
            raise InputError(folder, "class folder holds no object masks (*.png)")
        if entry not in skip_classes:
            folders[entry] = objects
    return folders


def combine_objects(image_path, shape, folders, class_names):
    """(int32 labels, int32 class index per id [N + 1], report) from one PNG per object;
    overlapping pixels go to the smaller object. The report counts the objects, those that
    share pixels with another, the shared pixels, and objects wholly covered by smaller ones."""
    objects = []
    for class_name, paths in folders.items():
        for path in paths:
            mask = np.asarray(readers.read_image(path))
            if mask.ndim == 3:
                mask = mask[..., 0]
            require_same_size(path, mask.shape, image_path, shape)
            mask = mask > 0
            if mask.any():
                objects.append((int(mask.sum()), path, class_names.index(class_name), mask))
    labels = np.zeros(shape, np.int32)
    covered = np.zeros(shape, np.int32)
    classes = [NO_CLASS]
    # largest first, so a smaller object lying on a larger one keeps its pixels
    for index, (_, _, class_index, mask) in enumerate(sorted(objects, key=lambda o: (-o[0], o[1])), start=1):
        labels[mask] = index
        covered += mask
        classes.append(class_index)
    shared = covered > 1
    overlap_pixels = int(np.count_nonzero(shared))
    overlapping = sum(1 for *_, mask in objects if overlap_pixels and np.any(mask & shared))
    labels, kept = relabel_sequential(labels)
    report = {"objects": len(objects), "overlapping_objects": overlapping, "overlap_pixels": overlap_pixels,
              "objects_hidden_by_overlap": len(objects) - len(kept)}
    if overlap_pixels:
        log.warning("%s: %d objects overlap (%d pixels); overlapping pixels went to the smaller object",
                    image_path, overlapping, overlap_pixels)
    return labels, np.asarray([NO_CLASS] + [classes[i] for i in kept], np.int32), report


def require_same_size(mask_path, mask_shape, image_path, image_shape):
    if tuple(mask_shape[:2]) != tuple(image_shape[:2]):
        raise InputError(mask_path, f"is {mask_shape[1]}×{mask_shape[0]}, but its image "
                                    f"{os.path.basename(image_path)} is {image_shape[1]}×{image_shape[0]}")


def cellpose_mask_path(image_path):
    """NAME_masks.tif or NAME_masks.png beside NAME.ext, or None."""
    stem = os.path.splitext(image_path)[0]
    for suffix in (".tif", ".tiff", ".png"):
        if os.path.isfile(stem + "_masks" + suffix):
            return stem + "_masks" + suffix
    return None


def mean_diameter(labels):
    """Cellpose's diameter of a label image: that of a disc with the median cell area (0 if none)."""
    counts = np.bincount(labels.ravel())[1:]
    counts = counts[counts > 0]
    return float(np.sqrt(np.median(counts)) / (np.sqrt(np.pi) / 2)) if len(counts) else 0.0
