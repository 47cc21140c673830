"""cryoet's raw data: finding tomograms (MRC with label volumes, or the study's 2-D
Image/ and label/ slice folders), reading them into normalised tiles, the training
labels' class statistics, and the TensorFlow side: preprocessing, augmentation and the
(inputs, targets) pairs the network trains on."""

import glob
import os

import numpy as np

from biomodels.errors import InputError
from biomodels.pipelines import ome_zarr, readers
from biomodels.tasks.base import Source
from biomodels.tasks.cryoet.config import CLASS_NAMES, IGNORE_LABEL, NUM_CLASSES


def find_sources(input_path):
    readers.require_exists(input_path)
    if os.path.isfile(input_path) or ome_zarr.is_ome_zarr(input_path):
        return [_tomogram_source(input_path)]
    image_dir, label_dir = os.path.join(input_path, "Image"), os.path.join(input_path, "label")
    if os.path.isdir(image_dir):
        return _slice_sources(image_dir, label_dir)
    tomograms = tomogram_paths(input_path)
    if not tomograms:
        raise InputError(input_path, "no tomograms: expected NAME.mrc (or an OME-Zarr NAME.zarr) with NAME_labels.mrc "
                                     "(or NAME_labels.zarr), or Image/ and label/ folders")
    return [_tomogram_source(path) for path in tomograms]


#: the file names a tomogram may have: MRC, or an OME-Zarr image
TOMOGRAM_SUFFIXES = (".mrc", ome_zarr.SUFFIX)


def tomogram_paths(directory):
    """The tomograms in `directory` (.mrc files and OME-Zarr .zarr images), label
    volumes left out."""
    found = [path for suffix in TOMOGRAM_SUFFIXES for path in glob.glob(os.path.join(directory, "*" + suffix))]
    return sorted(path for path in found if not split_name(path)[0].endswith("_labels"))


def split_name(path):
    """(name, suffix) of a tomogram's path: "a/b/TS_01.zarr" -> ("TS_01", ".zarr")."""
    base = os.path.basename(os.path.normpath(path))
    for suffix in TOMOGRAM_SUFFIXES:
        if base.endswith(suffix):
            return base[: -len(suffix)], suffix
    return os.path.splitext(base)


def open_slices(path):
    """A tomogram's Z slices, read one (MRC) or a row of chunks (OME-Zarr) at a time."""
    if ome_zarr.is_ome_zarr(path):
        return ome_zarr.ZarrSlices(path)
    from biomodels.pipelines.mrc_slices import MrcSlices

    return MrcSlices(path)


def read_volume(path):
    """A tomogram or label volume, MRC or OME-Zarr, whole, as a readers.Volume."""
    return ome_zarr.read_volume(path) if ome_zarr.is_ome_zarr(path) else readers.read_mrc(path)


def predict_inputs(input_path):
    """The tomograms predict labels, one by one: the file (or OME-Zarr image) itself, or
    a folder's .mrc and .zarr tomograms."""
    if not os.path.isdir(input_path) or ome_zarr.is_ome_zarr(input_path):
        return [input_path]
    paths = tomogram_paths(input_path)
    if not paths:
        raise InputError(input_path, "no .mrc or OME-Zarr .zarr tomograms in this directory")
    return paths


def _tomogram_source(path):
    name, suffix = split_name(path)
    if suffix not in TOMOGRAM_SUFFIXES:
        raise InputError(path, "expected an .mrc tomogram or an OME-Zarr .zarr image")
    beside = os.path.dirname(os.path.normpath(path))
    labels = [os.path.join(beside, f"{name}_labels{kind}") for kind in TOMOGRAM_SUFFIXES]
    found = [candidate for candidate in labels if os.path.exists(candidate)]
    if not found:
        raise InputError(path, f"no label volume {name}_labels.mrc (or {name}_labels.zarr) beside it")
    return Source(name=name, group=name, paths=(os.path.normpath(path), found[0]))


def _slice_sources(image_dir, label_dir):
    images = sorted(p for p in glob.glob(os.path.join(image_dir, "*")) if p.lower().endswith(readers.IMAGE_SUFFIXES))
    if not images:
        raise InputError(image_dir, "no TIFF or PNG images")
    sources = []
    for path in images:
        name = os.path.splitext(os.path.basename(path))[0]
        matches = [p for p in glob.glob(os.path.join(label_dir, name + ".*")) if p.lower().endswith(readers.IMAGE_SUFFIXES)]
        if not matches:
            raise InputError(path, f"no label image named {name}.* in {label_dir}")
        sources.append(Source(name=name, group=name, paths=(path, matches[0])))
    return sources


def read_source(source, config):
    image_path, label_path = source.paths
    voxel_size = None
    if split_name(image_path)[1] in TOMOGRAM_SUFFIXES:
        volume = read_volume(image_path)
        density, labels, voxel_size = volume.data, read_volume(label_path).data, list(volume.voxel_size)
    else:
        density, labels = _as_slices(image_path), _as_slices(label_path)
    if density.shape != labels.shape:
        raise InputError(label_path, f"shape {labels.shape} differs from the tomogram's {density.shape} ({image_path})")
    readers.require_finite(image_path, density)
    readers.require_labels_in_range(label_path, labels, NUM_CLASSES)
    density, mean, std = normalise_tomogram(density)
    labels = labels.astype(np.uint8)
    keep = slice(config.exclude_slices, density.shape[0] - config.exclude_slices)
    info = {"mean": mean, "std": std, "shape": list(density.shape), "voxel_size": voxel_size,
            "slices_used": len(range(*keep.indices(density.shape[0])))}
    return info, _tiled_examples(density[keep], labels[keep], config.tile_size)


def normalise_tomogram(density):
    """(normalised float32 volume, mean, std) with zero mean and unit variance."""
    mean, std, _ = tomogram_moments(density)
    return standardise(density, mean, std), mean, std


def standardise(density, mean, std):
    """float32 (density - mean) / std, a whole tomogram or one of its slices."""
    return (density.astype(np.float32) - np.float32(mean)) / np.float32(max(std, 1e-6))


def tomogram_moments(slices):
    """(mean, standard deviation, count of NaN or Inf voxels) of a tomogram given slice
    by slice."""
    return moments_from_sums(voxel_sums(slices))


def voxel_sums(slices):
    """The count, sum, sum of squares and NaN or Inf count of the voxels of some slices
    (partial sums: a tomogram's slabs add up). The sums are float64, one slice at a time
    (no float64 copy of the volume): a few voxels near float32's limit (±3e38, as damaged
    files hold) overflow a float32 sum to infinity and turn every voxel into NaN."""
    sums = {"count": 0, "total": 0.0, "squares": 0.0, "not_finite": 0}
    for image in slices:
        image = np.asarray(image, np.float64)
        sums["not_finite"] += int(image.size - np.count_nonzero(np.isfinite(image)))
        sums["total"] += float(image.sum())
        sums["squares"] += float(np.square(image).sum())
        sums["count"] += image.size
    return sums


def moments_from_sums(sums):
    """(mean, standard deviation, count of NaN or Inf voxels) from `voxel_sums`."""
    count = max(1, sums["count"])
    mean = sums["total"] / count
    return mean, float(np.sqrt(max(sums["squares"] / count - mean * mean, 0.0))), sums["not_finite"]


def _as_slices(path):
    """A 2-D image (or a TIFF stack) as a (Z, Y, X) array."""
    data = readers.read_image(path)
    if data.ndim == 3 and data.shape[-1] in (3, 4) and path.lower().endswith(".png"):
        data = data[..., 0]
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise InputError(path, f"expected a 2-D slice or a Z stack, found shape {data.shape}")
    return data


def _tiled_examples(density, labels, tile):
    """Examples {"image": (tile, tile) float32, "labels": (tile, tile) uint8} from every
    slice; borders are reflection-padded with the padding labelled IGNORE_LABEL."""
    _, height, width = density.shape
    pad_h, pad_w = (-height) % tile, (-width) % tile
    for image, label in zip(density, labels):
        if pad_h or pad_w:
            mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "symmetric"
            image = np.pad(image, ((0, pad_h), (0, pad_w)), mode=mode)
            label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_LABEL)
        for y in range(0, height + pad_h, tile):
            for x in range(0, width + pad_w, tile):
                yield {"image": image[y:y + tile, x:x + tile], "labels": label[y:y + tile, x:x + tile]}


def class_pixel_sums(examples):
    """The pixel count of each class in `examples`' labels (partial sums, see
    biomodels.pipelines.partial_sums)."""
    counts = np.zeros(NUM_CLASSES, np.int64)
    for example in examples:
        labels = example["labels"]
        counts += np.bincount(labels[labels != IGNORE_LABEL].ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    return {"class_pixel_counts": counts}


def class_statistics(sums):
    """Pixel counts and frequencies of each class in the training labels, from their sums."""
    counts = np.asarray(sums.get("class_pixel_counts", np.zeros(NUM_CLASSES, np.int64)))
    frequencies = counts / max(1, counts.sum())
    return {"class_names": list(CLASS_NAMES), "class_pixel_counts": counts.tolist(), "class_frequencies": frequencies.tolist()}


def preprocess(inputs):
    """Standardise each image of a [N, H, W, C] batch to zero mean, unit variance (what
    `serving_default` does to the whole slices it is given)."""
    import tensorflow as tf

    inputs = tf.cast(inputs, tf.float32)
    mean, variance = tf.nn.moments(inputs, axes=[1, 2, 3], keepdims=True)
    return (inputs - mean) / tf.sqrt(variance + 1e-6)


def augment(example, seed, config):
    """Flip, quarter turns, a gain of 0.9-1.1 and Gaussian noise up to `noise_augmentation`;
    nothing with `augment=False` (the study's setting)."""
    import tensorflow as tf

    if not config.augment:
        return example

    seeds = tf.random.experimental.stateless_split(seed, num=4)
    image = example["image"][..., tf.newaxis]
    labels = tf.cast(example["labels"], tf.int32)[..., tf.newaxis]
    both = tf.concat([image, tf.cast(labels, tf.float32)], axis=-1)
    both = tf.image.stateless_random_flip_left_right(both, seeds[0])
    turns = tf.random.stateless_uniform([], seeds[1], 0, 4, dtype=tf.int32)
    both = tf.image.rot90(both, turns)
    image, labels = both[..., :1], tf.cast(tf.round(both[..., 1]), tf.uint8)
    gain = tf.random.stateless_uniform([], seeds[2], 0.9, 1.1)
    noise_std = tf.random.stateless_uniform([], seeds[3], 0.0, config.noise_augmentation)
    noise = tf.random.stateless_normal(tf.shape(image), seeds[3]) * noise_std
    return {"image": image[..., 0] * gain + noise[..., 0], "labels": labels}


def model_io(example):
    """(image [H, W, 1], int32 labels [H, W]): the tile as prepare wrote it, standardised
    with its whole tomogram's mean and deviation, not its own, so that a tile means the
    same at any tile size."""
    import tensorflow as tf

    return tf.cast(example["image"], tf.float32)[..., tf.newaxis], tf.cast(example["labels"], tf.int32)
