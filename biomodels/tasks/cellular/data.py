"""cellular's raw data: cell images and their instance masks, found, read and checked;
each image made one example (normalised image, labels, flows, diameter, classes); and
the TensorFlow side: percentile normalisation (shared with the serving graph),
flow-carrying augmentation, padded (inputs, targets) pairs and batches.

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
import re

import numpy as np

from biomodels.errors import ConfigError, InputError
from biomodels.pipelines import image_regions, ome_zarr, readers
from biomodels.tasks.base import Source
from biomodels.tasks.cellular.config import check_config, size_multiple

log = logging.getLogger(__name__)

#: what Cellpose and biomodels write beside an image (masks, flows, outputs; not inputs)
OUTPUT_SUFFIXES = ("_masks", "_flows", "_outlines", "_cp_masks", "_cp_output", "_cellprob", "_seg")
NO_CLASS = -1


def predict_inputs(input_path):
    """The images predict segments, one by one: the file (or OME-Zarr image) itself, or
    a folder's images."""
    single = os.path.isfile(input_path) or ome_zarr.is_ome_zarr(input_path)
    paths = [input_path] if single else image_files(input_path)
    if not paths:
        raise InputError(input_path, "holds no TIFF, PNG or OME-Zarr images")
    return paths


def image_files(folder):
    """Images in `folder` (TIFF, PNG, OME-Zarr .zarr) that are not masks or outputs, sorted."""
    paths = sorted(p for p in glob.glob(os.path.join(folder, "*"))
                   if p.lower().endswith(readers.IMAGE_SUFFIXES + (ome_zarr.SUFFIX,)))
    return [p for p in paths if not image_regions.output_name(p, "").endswith(OUTPUT_SUFFIXES)]


def keep_for_training(example, config):
    """Whether training uses an example: Cellpose leaves out training images with fewer
    than `min_masks` masks; validation and test images are all scored."""
    import tensorflow as tf

    return tf.reduce_max(example["labels"]) >= config.min_masks


def check_training_images(manifest, config):
    """Refuse a configuration whose `min_masks` leaves no training image (training would
    wait forever for a batch)."""
    objects = [source.details.get("objects", 0) for source in manifest.sources_in("train")]
    if objects and max(objects) < config.min_masks:
        raise ConfigError(f"--set min_masks={config.min_masks}: no training image has that many masks "
                          f"(the most is {max(objects)})")


def read_cell_image(path, channels=(0, 1), gray=False):
    """float32 [H, W, len(channels)] of the chosen channels of an image file or OME-Zarr
    image (see `cell_channels`)."""
    if ome_zarr.is_ome_zarr(path):
        image = image_regions.ImageRegions(path)
        return cell_channels(image.region(0, image.shape[0], 0, image.shape[1]), channels, gray, path)
    return cell_channels(readers.read_image(path), channels, gray, path)


def cell_channels(image, channels=(0, 1), gray=False, source="the image"):
    """float32 [H, W, len(channels)] of the chosen channels of an image [H, W], [H, W, C]
    or [C, H, W] (channels first, as ImageJ writes multi-channel TIFF); with `gray`,
    Cellpose's channels=[0, 0]: the mean of all the image's channels, then a channel of
    zeros. `source` names the image in errors."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    elif image.ndim == 3 and image.shape[0] <= 4 < min(image.shape[1:]) and image.shape[-1] > 4:
        image = np.moveaxis(image, 0, -1)
    if image.ndim != 3 or image.shape[-1] > 4:
        hint = ": a Z-stack? segment it with --do_3D or --stitch_threshold" if image.ndim >= 3 else ""
        raise InputError(source, f"expected a 2-D image with at most 4 channels, found shape {image.shape}{hint}")
    if image.shape[-1] == 4 and str(source).lower().endswith(".png"):
        image = image[..., :3]  # alpha
    readers.require_finite(source, image)
    if min(image.shape[:2]) < 8:
        raise InputError(source, f"is too small ({image.shape[1]}×{image.shape[0]})")
    return choose_channels(image, channels, gray)


def choose_channels(image, channels, gray):
    """float32 [..., len(channels)] of `image` [..., C] (any leading axes): the
    `channels` picked (zeros for one the image lacks), or with `gray` Cellpose's
    channels=[0, 0], the mean of the image's channels and a channel of zeros."""
    if any(c < 0 for c in channels):
        raise ConfigError(f"channels must be non-negative indices, got {channels}")
    if gray:
        chosen = [image.astype(np.float64).mean(axis=-1), np.zeros(image.shape[:-1])]
    else:
        chosen = [image[..., c] if c < image.shape[-1] else np.zeros(image.shape[:-1]) for c in channels]
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
    share pixels with another, the shared pixels, and objects wholly covered by smaller ones.

    Each object is kept only as its bounding box's crop (one full-size mask at a time is
    read), so memory grows with the objects' area, not with their count times the image's."""
    objects = []
    for class_name, paths in folders.items():
        for path in paths:
            mask = np.asarray(readers.read_image(path))
            if mask.ndim == 3:
                mask = mask[..., 0]
            require_same_size(path, mask.shape, image_path, shape)
            rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if len(rows):
                box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
                crop = mask[box] > 0
                objects.append((int(crop.sum()), path, class_names.index(class_name), box, crop))
    labels = np.zeros(shape, np.int32)
    covered = np.zeros(shape, np.int32)
    classes = [NO_CLASS]
    # largest first, so a smaller object lying on a larger one keeps its pixels
    for index, (_, _, class_index, box, crop) in enumerate(sorted(objects, key=lambda o: (-o[0], o[1])), start=1):
        labels[box][crop] = index
        covered[box] += crop
        classes.append(class_index)
    shared = covered > 1
    overlap_pixels = int(np.count_nonzero(shared))
    overlapping = sum(1 for *_, box, crop in objects if overlap_pixels and np.any(crop & shared[box]))
    from skimage.segmentation import relabel_sequential

    labels, _, inverse = relabel_sequential(labels)
    kept = inverse[np.arange(1, int(labels.max()) + 1)]
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


def find_sources(input_path, config):
    check_config(config)
    if not os.path.isdir(input_path):
        raise InputError(input_path, "expected a folder: images/ and masks/ (CELLULAR) or NAME.tif with NAME_masks.tif")
    image_dir, mask_root = os.path.join(input_path, "images"), os.path.join(input_path, "masks")
    if os.path.isdir(image_dir) and os.path.isdir(mask_root):
        return _check_patterns(_cellular_sources(image_dir, mask_root, config), config, input_path)
    images = image_files(input_path)
    pairs = [(path, cellpose_mask_path(path)) for path in images]
    if not images or not any(mask for _, mask in pairs):
        raise InputError(input_path, "no images with masks: expected images/ and masks/<image>/<class>/*.png "
                                     "(CELLULAR) or NAME.tif with NAME_masks.tif (Cellpose)")
    for path, mask in pairs:
        if mask is None:
            raise InputError(path, "has no masks (expected NAME_masks.tif or NAME_masks.png beside it)")
    return _check_patterns([Source(name=_stem(path), group=_stem(path), paths=(path, mask),
                                   details={"class_names": ()}) for path, mask in pairs], config, input_path)


def _cellular_sources(image_dir, mask_root, config):
    images = image_files(image_dir)
    if not images:
        raise InputError(image_dir, "holds no TIFF or PNG images")
    folders = {}
    for path in images:
        mask_dir = os.path.join(mask_root, _stem(path))
        folders[path] = class_folders(mask_dir, config.skip_classes)
        if not os.path.isdir(mask_dir) or not os.listdir(mask_dir):
            raise InputError(path, f"has no masks (expected {mask_dir}/<class>/*.png)")
    class_names = tuple(sorted({name for found in folders.values() for name in found}))
    return [Source(name=_stem(path), group=_stem(path), paths=(path, os.path.join(mask_root, _stem(path))),
                   details={"class_names": class_names}) for path in images]


def assigned_split(source, config):
    """test or val where the image name matches that pattern; the rest trains when a pattern is set."""
    for split, pattern in (("test", config.test_pattern), ("val", config.val_pattern)):
        if pattern and re.search(pattern, source.name):
            return split
    return "train" if config.val_pattern or config.test_pattern else None


def read_source(source, config):
    image_path, mask_path = source.paths
    class_names = list(source.details["class_names"])
    raw = read_cell_image(image_path, config.channels, config.gray)
    if os.path.isdir(mask_path):
        folders = class_folders(mask_path, config.skip_classes)
        labels, classes, report = combine_objects(image_path, raw.shape[:2], folders, class_names)
    else:
        labels = check_labels(mask_path, readers.read_image(mask_path))
        require_same_size(mask_path, labels.shape, image_path, raw.shape)
        from skimage.segmentation import relabel_sequential

        labels = relabel_sequential(labels)[0]
        classes = np.full(labels.max() + 1, NO_CLASS, np.int32)
        report = {"objects": int(labels.max())}
    info = {"shape": list(labels.shape), "class_names": class_names, "diameter": mean_diameter(labels), **report}
    from biomodels.ops.flows import masks_to_flows

    example = {
        "image": normalise(raw),
        "labels": labels,
        "flows": masks_to_flows(labels).transpose(1, 2, 0),
        "diameter": np.float32(info["diameter"]),
        "classes": classes,
    }
    return info, [example]


def normalise(image):
    """numpy [H, W, C] -> the network's input, by the graph's own `preprocess`."""
    return np.asarray(preprocess(image[np.newaxis])[0])


def resize(image, height, width):
    """Bilinear resize of [H, W, C] float32 to [height, width, C]."""
    import tensorflow as tf

    return np.asarray(tf.image.resize(image, [height, width], method="bilinear"))


def normalise_between(image, low, high):
    """numpy [H, W, C] scaled as `preprocess` scales it, with given 1st and 99th
    percentiles per channel (a whole image's, for one block of it)."""
    image = np.asarray(image, np.float32)
    spread = np.asarray(high, np.float32) - np.asarray(low, np.float32)
    scaled = (image - np.asarray(low, np.float32)) / np.maximum(spread, np.float32(1e-6))
    return np.where(spread > 1e-6, scaled, np.float32(0)).astype(np.float32)


def statistics_sums(examples):
    """The training images' diameters and cells, summed (biomodels.pipelines.partial_sums)."""
    sums = {"images": 0, "diameter_sum": 0.0, "cells": 0}
    for example in examples:
        sums["images"] += 1
        sums["diameter_sum"] += float(example["diameter"])
        sums["cells"] += int(example["labels"].max())
    return sums


def statistics_from_sums(sums):
    images = sums.get("images", 0)
    return {"mean_diameter": sums["diameter_sum"] / images if images else 0.0, "cells": int(sums.get("cells", 0)),
            "images": int(images)}


def preprocess(inputs):
    """[N, H, W, C] -> each channel of each image scaled so its 1st and 99th
    percentiles become 0 and 1 (channels with no spread become 0)."""
    import tensorflow as tf

    from biomodels.ops.normalisation import percentiles

    inputs = tf.cast(inputs, tf.float32)
    low, high = percentiles(inputs, 1.0, 99.0)
    spread = high - low
    scaled = (inputs - low) / tf.maximum(spread, 1e-6)
    return tf.where(spread > 1e-6, scaled, tf.zeros_like(scaled))


def augment(example, seed, config):
    import tensorflow as tf

    from biomodels.pipelines.augment2d import transform_flow_example

    seeds = tf.random.experimental.stateless_split(seed, num=2)
    diameter = tf.cast(example["diameter"], tf.float32)
    to_mean = tf.where(diameter > 0, config.diameter_mean / tf.maximum(diameter, 1e-3), 1.0)
    scale = to_mean * tf.random.stateless_uniform([], seeds[0], *config.scale_range)
    image, labels, flows = transform_flow_example(example["image"], example["labels"], example["flows"], seeds[1],
                                                  config.crop_size, scale)
    return {**example, "image": image, "labels": labels, "flows": flows}


def model_io(example, config):
    """(normalised image, targets [H, W, 5] of `ops.cellpose_parts.TARGET_PARTS`: the unit
    flows, the cell mask, the instance label and the class of the pixel's object),
    padded to a multiple of the network's size step with -1, a label which the loss and
    the metrics leave out."""
    import tensorflow as tf

    from biomodels.ops.cellpose_parts import TARGET_PARTS
    from biomodels.ops.padding import pad_to_multiple

    labels = tf.cast(example["labels"], tf.int32)
    pixel_classes = tf.gather(tf.cast(example["classes"], tf.int32), labels)
    parts = {"flows": tf.cast(example["flows"], tf.float32), "cell": tf.cast(labels > 0, tf.float32)[..., tf.newaxis],
             "label": tf.cast(labels, tf.float32)[..., tf.newaxis],
             "pixel_class": tf.cast(pixel_classes, tf.float32)[..., tf.newaxis]}
    targets = tf.concat([parts[name] for name in TARGET_PARTS], axis=-1)
    multiple = size_multiple(config)
    image = pad_to_multiple(example["image"], multiple, axes=(0, 1))
    targets = pad_to_multiple(targets, multiple, axes=(0, 1), constant_values=-1.0)
    return image, targets


def batch(data, batch_size, training, whole=True):
    if training:
        return data.batch(batch_size, drop_remainder=whole)
    return data.padded_batch(batch_size, padding_values=(0.0, -1.0))


def _check_patterns(sources, config, input_path):
    """The sources, unless a split pattern matches none of their names."""
    for name in ("val_pattern", "test_pattern"):
        pattern = getattr(config, name)
        if pattern and not any(re.search(pattern, source.name) for source in sources):
            raise InputError(input_path, f"no image name matches --set {name}={pattern}")
    return sources


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]
