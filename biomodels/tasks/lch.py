"""lch: Live Cell Histology. An adversarial autoencoder learns a 56-d code of label-free
single-cell images without labels; a linear classifier on the codes then asks whether
they tell melanoma cells of high from low metastatic efficiency in cell lines it never
saw, and decoding codes moved along the classifier's direction shows what the
classifier looks at (in-silico cells).

Raw data: a folder of grayscale single-cell crops (PNG or TIFF, 256×256 in the study;
other sizes are centre-cropped to a square and resized, with a warning; RGB is converted
to gray, with a warning), whose file names carry metadata read by `filename_pattern`, a
regular expression with named groups (one of them, `cell_type_field`, names the cell
line or PDX), and a CSV with columns `cell_type,efficiency` (high or low), by default
`efficiency.csv` in the folder (`--set efficiency_csv=PATH`).

The split is by cell, stratified by cell line (70/15/15), so every line is in every
split. `evaluate` encodes the cells of a split and scores each cell line with a
logistic regression fitted on the training split's codes of the other lines
(leave-one-cell-line-out), pooled into one ROC-AUC; the same classifier on simple image
statistics (intensity mean, spread and percentiles) is shown beside it as a baseline.
After training, a classifier on the codes of all training and validation cells is kept
in calibration.json and in the export, where it serves the `classify` signature and
gives the direction for in-silico cells.
"""

import csv
import dataclasses
import logging
import os
import re

import numpy as np

from biomodels import config as config_lib
from biomodels.errors import ConfigError, InputError
from biomodels.tasks.base import Source, Task

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
NORMALISATIONS = ("percentile", "none")
STUDY_CROP_SIZE = 256
EFFICIENCIES = {"high": 1, "low": 0}
# date_celltype_s<site>_t<time>_p<position>_f<frame>, as the synthetic crops are named
DEFAULT_PATTERN = r"(?P<date>\d+)_(?P<cell_type>[A-Za-z0-9-]+)_s(?P<site>\d+)_t(?P<time>\d+)_p(?P<position>\d+)_f(?P<frame>\d+)"
log = logging.getLogger("biomodels")
_SIZES_WARNED = set()


@dataclasses.dataclass(frozen=True)
class LCHConfig:
    image_size: int = 64
    latent_dim: int = 56
    filters: tuple[int, ...] = (32, 64, 128, 256)
    discriminator_units: tuple[int, ...] = (256, 256, 128)
    adversarial_weight: float = 1.0
    learning_rate: float = 1e-3
    beta_1: float = 0.5
    batch_size: int = 32
    epochs: int = 40
    steps_per_epoch: int = 0
    augment: bool = True
    intensity_normalisation: str = "percentile"
    filename_pattern: str = DEFAULT_PATTERN
    cell_type_field: str = "cell_type"
    efficiency_csv: str = ""
    classifier_l2: float = 0.0  # 0: chosen by leave-one-cell-line-out on the training split
    insilico_span: float = 3.0
    synthetic_cells: int = 960
    synthetic_cell_lines: int = 8


class LCHTask(Task):
    name = "lch"
    summary = "adversarial autoencoder of label-free melanoma cells, latent classification of metastatic efficiency"
    Config = LCHConfig
    checkpoint_monitor = ("val_reconstruction_loss", "min")
    default_split = (0.7, 0.15, 0.15)
    data_fields = ("image_size", "filename_pattern", "cell_type_field", "efficiency_csv", "synthetic_cells",
                   "synthetic_cell_lines")
    summary_examples = 64

    @classmethod
    def presets(cls):
        return {
            "quick": LCHConfig(),
            # the study: 256×256 crops, six convolutions 64-1024, discriminator 1024-1024-512,
            # Adam 2e-4 (beta 0.5), batch 50, 150 epochs, no augmentation, crops as 8-bit / 255
            "paper": LCHConfig(image_size=256, filters=(64, 128, 256, 512, 1024, 1024),
                               discriminator_units=(1024, 1024, 512), learning_rate=2e-4, batch_size=50, epochs=150,
                               augment=False, intensity_normalisation="none"),
        }

    # -- raw data -------------------------------------------------------------
    def find_sources(self, input_path, config):
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

    def read_source(self, source, config):
        table_path, paths = source.paths[0], source.paths[1:]
        table = read_efficiency_table(table_path)
        line_index = sorted(table).index(source.group)
        efficiency = table[source.group]
        examples = []
        for path in paths:
            crop = self.fit_crop(read_crop(path), config.image_size)
            examples.append({"image": quantise(crop), "efficiency": np.int64(EFFICIENCIES[efficiency]),
                             "cell_line": np.int64(line_index)})
        info = {"cell_line": source.group, "cell_line_index": line_index, "efficiency": efficiency, "cells": len(examples)}
        return info, examples

    def fit_crop(self, crop, size):
        """[size, size, 1] float32 in [0, 1] from a [H, W] crop: centred, square, resized."""
        return np.asarray(resize_crops(crop[None, :, :, None], size))[0]

    def write_synthetic(self, directory, num_examples, seed, config):
        from biomodels.pipelines.synthetic import lch as synthetic

        synthetic.write_dataset(directory, num_examples, seed, config.synthetic_cell_lines)

    def default_synthetic_examples(self, config):
        return config.synthetic_cells

    def split_by_example(self, config):
        return True

    def stratum(self, example):
        return int(example["cell_line"])

    def statistics(self, examples):
        lines, intensities = {}, []
        for example in examples:
            key = str(int(example["cell_line"]))
            lines[key] = lines.get(key, 0) + 1
            intensities.append(float(example["image"].mean()) / 255)
        return {"cells": sum(lines.values()), "cells_per_line": lines, "mean_intensity": float(np.mean(intensities))}

    # -- model ----------------------------------------------------------------
    def build_model(self, config, manifest):
        from biomodels.models import AdversarialAutoencoder

        if config.image_size % 2 ** len(config.filters):
            raise ConfigError(f"--set image_size={config.image_size} must be a multiple of 2**{len(config.filters)}: "
                              f"each of the {len(config.filters)} encoder layers halves it")
        return AdversarialAutoencoder(config.image_size, config.latent_dim, config.filters, config.discriminator_units,
                                      config.adversarial_weight, seed=manifest.get("seed", 0))

    def compile_arguments(self, config, manifest, steps_per_epoch):
        import keras

        return {"optimizer": keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1),
                "discriminator_optimizer": keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1)}

    def preprocess(self, inputs, config):
        """Gray crops [batch, height, width, 1] with intensities in [0, 1] (8-bit values
        / 255): centre-cropped to a square, resized to the model's size (bilinear with
        antialiasing), then with `intensity_normalisation=percentile` each crop's 1st to
        99th percentile stretched to [0, 1]; clipped to [0, 1]."""
        import tensorflow as tf

        config_lib.check_choice("intensity_normalisation", config.intensity_normalisation, NORMALISATIONS)
        images = resize_crops(inputs, config.image_size)
        if config.intensity_normalisation == "percentile":
            values = tf.sort(tf.reshape(images, [tf.shape(images)[0], -1]), axis=1)
            count = tf.shape(values)[1]
            low = values[:, count // 100][:, None, None, None]
            high = values[:, count - 1 - count // 100][:, None, None, None]
            images = (images - low) / tf.maximum(high - low, 1e-3)
        return tf.clip_by_value(images, 0.0, 1.0)

    def augment(self, example, seed, config):
        import tensorflow as tf

        if not config.augment:
            return example
        image = tf.image.rot90(example["image"], tf.random.stateless_uniform([], seed, 0, 4, dtype=tf.int32))
        image = tf.image.stateless_random_flip_left_right(image, seed + 1)
        return {**example, "image": image}

    def model_io(self, example, config):
        import tensorflow as tf

        image = tf.cast(example["image"], tf.float32)[None] / 255.0
        return self.preprocess(image, config)[0], {"efficiency": example["efficiency"], "cell_line": example["cell_line"]}

    # -- results --------------------------------------------------------------
    def calibrate(self, model, dataset, manifest, config):
        """The classifier of efficiency on the codes of all training and validation cells."""
        from biomodels.ops.latent_classifier import fit_logistic

        train = encode_dataset(model, self.split_dataset(manifest, config, "train"))
        val = encode_dataset(model, dataset)
        codes = np.concatenate([train["codes"], val["codes"]])
        labels = np.concatenate([train["efficiency"], val["efficiency"]])
        if len(np.unique(labels)) < 2:
            log.warning("the training cells hold one efficiency class only: no classifier, no classify signature")
            return {}
        l2 = classifier_penalty(train, "codes", config)
        return {"classifier": fit_logistic(codes, labels, l2).to_dict(), "classifier_l2": l2,
                "classifier_cells": int(len(labels))}

    def split_dataset(self, manifest, config, split):
        from biomodels.pipelines import dataset as dataset_lib

        return dataset_lib.evaluation_dataset(self, config, manifest["data_dir"], manifest, config.batch_size, split)

    def evaluate(self, model, dataset, manifest, config, calibration=None):
        from biomodels.tasks.lch_metrics import latent_metrics

        return latent_metrics(self, model, dataset, manifest, config, calibration or {})

    def metrics_table(self, metrics):
        from biomodels.tasks.lch_metrics import metrics_rows

        return ("metric", "latent codes", "image statistics baseline"), metrics_rows(metrics)

    def summary_images(self, model, inputs, targets):
        from biomodels.tasks.lch_outputs import histogram_image, side_by_side

        reconstructions = np.asarray(model(inputs[:4], training=False))
        codes = np.asarray(model.encoder(inputs, training=False))
        return {"inputs_and_reconstructions": side_by_side(np.asarray(inputs[:4]), reconstructions),
                "latent_against_prior": histogram_image(codes.reshape(-1))[None]}

    def serving_functions(self, model, config, calibration=None):
        import tensorflow as tf

        from biomodels.ops.latent_classifier import LinearClassifier

        images_spec = tf.TensorSpec([None, None, None, 1], tf.float32, name="images")

        @tf.function(input_signature=[images_spec])
        def encode(images):
            return {"latent": tf.cast(model.encoder(self.preprocess(images, config), training=False), tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None, config.latent_dim], tf.float32, name="latent")])
        def decode(latent):
            return {"images": tf.cast(model.decoder(latent, training=False), tf.float32)}

        functions = {"serving_default": encode, "encode": encode, "decode": decode}
        if (calibration or {}).get("classifier"):
            classifier = LinearClassifier.from_dict(calibration["classifier"])
            mean, scale = tf.constant(classifier.mean, tf.float32), tf.constant(classifier.scale, tf.float32)
            weights, bias = tf.constant(classifier.weights[:, None], tf.float32), tf.constant(classifier.bias, tf.float32)

            @tf.function(input_signature=[images_spec])
            def classify(images):
                codes = tf.cast(model.encoder(self.preprocess(images, config), training=False), tf.float32)
                logits = tf.matmul((codes - mean) / scale, weights)[:, 0] + bias
                return {"probability_high": tf.sigmoid(logits)}

            functions["classify"] = classify
        return functions

    def warmup_inputs(self, config):
        rng = np.random.default_rng(0)
        crops = [rng.uniform(0, 1, (n, STUDY_CROP_SIZE, STUDY_CROP_SIZE, 1)).astype(np.float32) for n in (1, 8)]
        inputs = [("serving_default", {"images": crop}) for crop in crops]
        inputs.append(("decode", {"latent": rng.normal(size=(8, config.latent_dim)).astype(np.float32)}))
        return inputs

    def bioimageio_description(self, config, pixel_size=None):
        return {
            "name": "biomodels lch adversarial autoencoder encoder",
            "description": "Encoder of an adversarial autoencoder of label-free single-cell images (Live Cell Histology): "
                           f"a {config.latent_dim}-d code per cell whose prior is N(0, I).",
            "tags": ["label-free", "autoencoder", "embedding", "melanoma", "2d", "tensorflow", "biomodels"],
            "cite": [{"text": "Zaritsky, Jamieson et al., Interpretable deep learning uncovers cellular properties in "
                              "label-free live cell images that are predictive of highly metastatic melanoma, "
                              "Cell Systems 12, 733-747 (2021)", "doi": "10.1016/j.cels.2021.05.003"}],
            "inputs": [{
                "id": "images", "description": "a centred single-cell crop, gray in [0, 1] (8-bit / 255), any size; "
                                               "squared, resized, contrast-stretched in the model",
                "axes": [{"type": "batch"},
                         {"type": "space", "id": "y", "size": {"min": 16, "step": 1}, "unit": "micrometer",
                          "scale": float(pixel_size or 1.0)},
                         {"type": "space", "id": "x", "size": {"min": 16, "step": 1}, "unit": "micrometer",
                          "scale": float(pixel_size or 1.0)},
                         {"type": "channel", "channel_names": ["gray"]}],
            }],
            "outputs": [{"id": "latent", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": latent_columns(config)}]}],
        }

    def predict_files(self, predictor, input_path, output_dir, options):
        from biomodels.tasks.lch_outputs import write_predictions

        return write_predictions(self, predictor, input_path, output_dir, options)


def resize_crops(images, size):
    """[batch, size, size, 1] float32: the centre square of each crop, resized (bilinear
    with antialiasing)."""
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return tf.image.resize(images[:, top:top + side, left:left + side, :], [size, size], method="bilinear", antialias=True)


def latent_columns(config):
    return [f"z{index}" for index in range(config.latent_dim)]


def find_crops(input_path, config, require_table=True):
    """(image paths, efficiency CSV path or None) under a file or folder. The table is
    `efficiency_csv`, else efficiency.csv in the folder; any other file is an error, so
    nothing is silently left out."""
    if not os.path.exists(input_path):
        raise InputError(input_path, "no such file or directory")
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
    from biomodels.pipelines.readers import read_image

    image = np.asarray(read_image(path))
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or image.ndim == 3 and image.shape[-1] in (3, 4)):
        raise InputError(path, f"is not a single-channel image (shape {image.shape})")
    scale = _full_scale(path, image)
    if image.ndim == 3:
        log.warning("%s: RGB image converted to gray", path)
        image = image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if min(image.shape) < 16:
        raise InputError(path, f"is too small for a cell crop ({image.shape[1]}×{image.shape[0]})")
    if image.shape != (STUDY_CROP_SIZE, STUDY_CROP_SIZE) and image.shape not in _SIZES_WARNED:
        _SIZES_WARNED.add(image.shape)  # once per size, not once per crop of a folder
        log.warning("%s: %d×%d crop centred and resized (the study's crops are %d×%d; said once per size)", path,
                    image.shape[1], image.shape[0], STUDY_CROP_SIZE, STUDY_CROP_SIZE)
    return (image.astype(np.float64) / scale).astype(np.float32)


def _full_scale(path, image):
    """What the brightest value means: the integer type's maximum, 1 for float images."""
    from biomodels.pipelines.readers import require_finite

    if image.dtype == bool:
        return 1.0
    if np.issubdtype(image.dtype, np.integer):
        return float(np.iinfo(image.dtype).max)
    require_finite(path, image)
    if image.min() < 0 or image.max() > 1:
        raise InputError(path, f"float intensities must lie in [0, 1], found {image.min():g} to {image.max():g}")
    return 1.0


def quantise(image):
    """float [0, 1] -> uint8, as the study's PNG crops were stored."""
    return np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8)


def encode_dataset(model, dataset):
    """{"codes", "efficiency", "cell_line", "reconstruction_bce", "reconstruction_mse",
    "image_statistics"} over a batched (images, targets) dataset, one row per cell."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def run(images):
        codes = model.encoder(images, training=False)
        reconstructions = model.decoder(codes, training=False)
        flat_images = tf.reshape(images, [tf.shape(images)[0], -1])
        flat_reconstructions = tf.clip_by_value(tf.reshape(reconstructions, tf.shape(flat_images)), 1e-7, 1 - 1e-7)
        bce = -tf.reduce_mean(flat_images * tf.math.log(flat_reconstructions)
                              + (1 - flat_images) * tf.math.log(1 - flat_reconstructions), axis=1)
        mse = tf.reduce_mean(tf.square(flat_images - flat_reconstructions), axis=1)
        return codes, bce, mse

    parts = {name: [] for name in ("codes", "efficiency", "cell_line", "reconstruction_bce", "reconstruction_mse",
                                   "image_statistics")}
    for images, targets in dataset:
        codes, bce, mse = run(images)
        parts["codes"].append(np.asarray(codes, np.float64))
        parts["reconstruction_bce"].append(np.asarray(bce, np.float64))
        parts["reconstruction_mse"].append(np.asarray(mse, np.float64))
        parts["efficiency"].append(np.asarray(targets["efficiency"]).reshape(-1))
        parts["cell_line"].append(np.asarray(targets["cell_line"]).reshape(-1))
        parts["image_statistics"].append(image_statistics(np.asarray(images)))
    return {name: np.concatenate(values) for name, values in parts.items()}


def classifier_penalty(train, features, config):
    """`classifier_l2`, or when it is 0 the penalty that scored best leaving each cell
    line of the training split out in turn (the first of the grid when fewer than two
    lines of each class leave nothing to choose by)."""
    from biomodels.ops.latent_classifier import L2_GRID, choose_l2

    if config.classifier_l2 > 0:
        return config.classifier_l2
    try:
        return choose_l2(train[features], train["efficiency"], train["cell_line"])[0]
    except ValueError:
        return L2_GRID[len(L2_GRID) // 2]


def image_statistics(images):
    """[batch, 5]: mean, standard deviation and the 5th, 50th, 95th percentiles of each
    image's intensities: what a classifier of brightness and contrast alone sees."""
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    return np.concatenate([flat.mean(axis=1, keepdims=True), flat.std(axis=1, keepdims=True),
                           np.percentile(flat, [5, 50, 95], axis=1).T], axis=1)


TASK = LCHTask()
