"""lch's raw data: finding single-cell crops and the efficiency table, reading metadata
from file names, reading crops (gray in [0, 1], RGB converted, other sizes centred and
resized), and the TensorFlow side: preprocessing (shared with the serving graph),
augmentation and the network's inputs."""

import collections
import csv
import logging
import os
import re

import numpy as np

from biomodels import config as config_lib
from biomodels.errors import ConfigError, InputError
from biomodels.ops.normalisation import percentiles
from biomodels.pipelines import readers
from biomodels.tasks.base import Source
from biomodels.tasks.lch.config import EFFICIENCIES, IMAGE_SUFFIXES, NORMALISATIONS, STUDY_CROP_SIZE

log = logging.getLogger("biomodels")
_SIZES_WARNED = set()


def find_sources(input_path, config):
    """One source per cell line: (efficiency CSV, its crops…)."""
    images, table_path = find_crops(input_path, config)
    table = read_efficiency_table(table_path)
    by_line = {}
    for path in images:
        cell_type = file_metadata(path, config)[config.cell_type_field]
        if cell_type not in table:
            raise InputError(table_path, f"gives no efficiency for cell type {cell_type!r} (of {os.path.basename(path)})")
        by_line.setdefault(cell_type, []).append(path)
    return [Source(name=line, group=line, paths=(table_path, *paths)) for line, paths in sorted(by_line.items())]


def read_source(source, config):
    table_path, paths = source.paths[0], source.paths[1:]
    table = read_efficiency_table(table_path)
    line_index = sorted(table).index(source.group)
    efficiency = table[source.group]
    examples = []
    for path in paths:
        crop = fit_crop(read_crop(path), config.image_size)
        examples.append({"image": quantise(crop), "efficiency": np.int64(EFFICIENCIES[efficiency]),
                         "cell_line": np.int64(line_index)})
    info = {"cell_line": source.group, "cell_line_index": line_index, "efficiency": efficiency, "cells": len(examples)}
    return info, examples


def fit_crop(crop, size):
    """[size, size, 1] float32 in [0, 1] from a [H, W] crop: centred, square, resized."""
    return np.asarray(resize_crops(crop[None, :, :, None], size))[0]


def resize_crops(images, size):
    """[batch, size, size, 1] float32: the centre square of each crop, resized (bilinear
    with antialiasing)."""
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    if images.shape[1] == images.shape[2] == size:
        return images  # resampling at scale 1 with antialiasing is the identity; skip its cost
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return tf.image.resize(images[:, top:top + side, left:left + side, :], [size, size], method="bilinear", antialias=True)


def find_crops(input_path, config, require_table=True):
    """(image paths, efficiency CSV path or None) under a file or folder. The table is
    `efficiency_csv`, else efficiency.csv in the folder; any other file is an error, so
    nothing is silently left out."""
    readers.require_exists(input_path)
    root = os.path.abspath(input_path if os.path.isdir(input_path) else os.path.dirname(os.path.abspath(input_path)))
    table_path = os.path.abspath(config.efficiency_csv) if config.efficiency_csv else os.path.join(root, "efficiency.csv")
    if os.path.isfile(input_path):
        images = [input_path]
    else:
        images = []
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
            for name in sorted(names):
                path = os.path.join(folder, name)
                if name.startswith(".") or path == table_path:
                    continue
                if not name.lower().endswith(IMAGE_SUFFIXES):
                    raise InputError(path, f"is not a single-cell crop: expected {', '.join(IMAGE_SUFFIXES)} files "
                                           "and one efficiency table")
                images.append(path)
        if not images:
            raise InputError(input_path, f"holds no crops ({', '.join(IMAGE_SUFFIXES)})")
    if not os.path.isfile(table_path):
        if require_table:
            raise InputError(table_path, "not found: give the efficiency table (columns cell_type,efficiency) as "
                                         "efficiency.csv in the folder or --set efficiency_csv=PATH")
        table_path = None
    return images, table_path


def file_metadata(path, config):
    """{group name: value} read from a crop's file name (without its suffix)."""
    try:
        pattern = re.compile(config.filename_pattern)
    except re.error as error:
        raise ConfigError(f"--set filename_pattern={config.filename_pattern!r} is not a regular expression ({error})") from None
    if config.cell_type_field not in pattern.groupindex:
        raise ConfigError(f"--set filename_pattern needs a named group (?P<{config.cell_type_field}>...) for the cell type")
    stem = os.path.splitext(os.path.basename(path))[0]
    match = pattern.fullmatch(stem)
    if match is None:
        raise InputError(path, f"file name does not match filename_pattern {config.filename_pattern!r}")
    return match.groupdict()


def read_efficiency_table(path):
    """{cell type: 'high' or 'low'} from a CSV with columns cell_type,efficiency."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"cannot read the efficiency table ({error})") from None
    if not rows or not {"cell_type", "efficiency"} <= set(rows[0]):
        raise InputError(path, "needs the columns cell_type,efficiency")
    table = {}
    for number, row in enumerate(rows, start=2):
        value = (row["efficiency"] or "").strip().lower()
        if value not in EFFICIENCIES:
            raise InputError(path, f"line {number}: efficiency {row['efficiency']!r} is not high or low")
        table[(row["cell_type"] or "").strip()] = value
    return table


def read_crop(path):
    """[H, W] float32 in [0, 1] from a gray crop; RGB(A) becomes gray with a warning."""
    image = np.asarray(readers.read_image(path))
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or image.ndim == 3 and image.shape[-1] in (3, 4)):
        raise InputError(path, f"is not a single-channel image (shape {image.shape})")
    if min(image.shape[:2]) < 16:  # before any statistic: an empty image has none
        raise InputError(path, f"is too small for a cell crop ({image.shape[1]}×{image.shape[0]})")
    scale = _full_scale(path, image)
    if image.ndim == 3:
        log.warning("%s: RGB image converted to gray", path)
        image = image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if image.shape != (STUDY_CROP_SIZE, STUDY_CROP_SIZE) and image.shape not in _SIZES_WARNED:
        _SIZES_WARNED.add(image.shape)  # once per size, not once per crop of a folder
        log.warning("%s: %d×%d crop centred and resized (the study's crops are %d×%d; said once per size)", path,
                    image.shape[1], image.shape[0], STUDY_CROP_SIZE, STUDY_CROP_SIZE)
    return (image.astype(np.float64) / scale).astype(np.float32)


def _full_scale(path, image):
    """What the brightest value means: the integer type's maximum, 1 for float images."""
    if image.dtype == bool:
        return 1.0
    if np.issubdtype(image.dtype, np.integer):
        return float(np.iinfo(image.dtype).max)
    readers.require_finite(path, image)
    if image.min() < 0 or image.max() > 1:
        raise InputError(path, f"float intensities must lie in [0, 1], found {image.min():g} to {image.max():g}")
    return 1.0


def quantise(image):
    """float [0, 1] -> uint8, as the study's PNG crops were stored."""
    return np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8)


def statistics_sums(examples):
    """The training cells per cell line and their summed mean intensities
    (biomodels.pipelines.partial_sums)."""
    sums = {"cells_per_line": collections.Counter(), "intensity_sum": 0.0}
    for example in examples:
        sums["cells_per_line"][str(int(example["cell_line"]))] += 1
        sums["intensity_sum"] += float(example["image"].mean()) / 255
    return sums


def statistics_from_sums(sums):
    lines = dict(sums.get("cells_per_line", {}))
    cells = sum(lines.values())
    return {"cells": cells, "cells_per_line": lines, "mean_intensity": sums["intensity_sum"] / cells if cells else 0.0}


def preprocess(inputs, config):
    """Gray crops [batch, height, width, 1] with intensities in [0, 1] (8-bit values
    / 255): centre-cropped to a square, resized to the model's size (bilinear with
    antialiasing), then with `intensity_normalisation=percentile` each crop's 1st to
    99th percentile stretched to [0, 1]; clipped to [0, 1]."""
    return stretch_intensities(resize_crops(inputs, config.image_size), config)


def stretch_intensities(images, config):
    """The second half of `preprocess`, on crops already at the model's size: with
    `intensity_normalisation=percentile` each crop's 1st to 99th percentile stretched to
    [0, 1]; clipped to [0, 1]."""
    import tensorflow as tf

    config_lib.check_choice("intensity_normalisation", config.intensity_normalisation, NORMALISATIONS)
    if config.intensity_normalisation == "percentile":
        low, high = percentiles(images, 1.0, 99.0)
        images = (images - low) / tf.maximum(high - low, 1e-3)
    return tf.clip_by_value(images, 0.0, 1.0)


def augment(example, seed, config):
    """One streamed crop turned and mirrored as `epoch_batches` turns and mirrors a batch
    (the same draws as a batch of one)."""
    if not config.augment:
        return example
    return {**example, "image": _turn_and_mirror(example["image"][None], seed)[0]}


def training_arrays(examples, config):
    """The network's crops of the kept training examples, [cells, size, size, 1] float32:
    `model_io` of each, once. Rotating and mirroring a square crop commute with resizing
    it and with stretching its percentiles, so `epoch_batches` augments these crops as
    `augment` would have augmented the raw ones."""
    import tensorflow as tf

    chunks = [model_io(batch, config)[0] for batch in examples.batch(1024)]
    return tf.concat(chunks, 0) if chunks else None


def epoch_batches(crops, seed, batch_size, config):
    """(crops,) batches of one pass over `training_arrays` in an order shuffled from the
    stateless `seed`, whole batches only; with `augment`, each crop turned a random number
    of quarter turns and mirrored left-right or not (`augment` does the same to a
    streamed crop). A batch is one gather and a few whole-batch ops instead of tf.data's
    steps for each of its crops (measured on the quick preset: 1.7 ms of CPU a batch of
    32 against 7.7-9.1 ms, beside a 47 ms step on the same two cores)."""
    import tensorflow as tf

    from biomodels.pipelines.dataset import gathered_batches, shuffled_rows

    def gathered(index, rows):
        batch = tf.gather(crops, rows)
        if config.augment:
            batch = _turn_and_mirror(batch, tf.random.experimental.stateless_fold_in(seed, index))
        return (batch,)

    return gathered_batches(shuffled_rows(tf.shape(crops)[0], seed, batch_size), gathered)


def _turn_and_mirror(batch, seed):
    """Each square crop of [batch, size, size, channels] turned k quarter turns
    (k uniform in 0-3) and then mirrored left-right with probability 1/2."""
    import tensorflow as tf

    count = tf.shape(batch)[0]
    turns = tf.random.stateless_uniform([count], seed, 0, 4, dtype=tf.int32)
    mirror = tf.random.stateless_uniform([count], seed + 1) < 0.5
    turned = tf.stack([tf.image.rot90(batch, k) for k in range(4)])  # [4, batch, ...]
    batch = tf.gather_nd(turned, tf.stack([turns, tf.range(count)], axis=1))
    return tf.where(mirror[:, None, None, None], tf.reverse(batch, axis=[2]), batch)


def model_io(examples, config):
    """(the network's images, {"efficiency", "cell_line", "image_statistics"}) of a batch
    of decoded examples (LCHTask.model_io_on_batches): the statistics are of each crop's
    raw intensities (resized, not yet stretched), since the baseline exists to show what
    brightness and contrast alone predict."""
    import tensorflow as tf

    resized = resize_crops(tf.cast(examples["image"], tf.float32) / 255.0, config.image_size)
    targets = {"efficiency": examples["efficiency"], "cell_line": examples["cell_line"],
               "image_statistics": raw_image_statistics(resized)}
    return stretch_intensities(resized, config), targets


def raw_image_statistics(images):
    """[batch, 5]: mean, standard deviation and the 5th, 50th and 95th percentiles of
    each image's intensities."""
    import tensorflow as tf

    flat = tf.reshape(images, [tf.shape(images)[0], -1])
    quantiles = [tf.reshape(q, [-1]) for q in percentiles(images, 5.0, 50.0, 95.0)]
    return tf.stack([tf.reduce_mean(flat, axis=1), tf.math.reduce_std(flat, axis=1), *quantiles], axis=1)


def load_crops(paths, size, show_progress=True):
    """[N, size, size, 1] float32 crops in [0, 1]: centred, square, resized; the rest of
    the preprocessing happens in the model's graph."""
    from biomodels.report import progress_bar

    crops = []
    bar = progress_bar(len(paths), "reading crops") if show_progress else None
    for done, path in enumerate(paths, start=1):
        crops.append(fit_crop(read_crop(path), size))
        if bar:
            bar.update(done)
    return np.stack(crops)
