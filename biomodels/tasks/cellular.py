"""cellular: Cellpose's flow network for cell instance segmentation (CELLULAR data set).

Raw data: the CELLULAR layout (`images/` and `masks/<image>/<class>/*.png`) or a
Cellpose training folder (`NAME.tif` beside `NAME_masks.tif`); see `cellular_data`.
Each image becomes one example: the image normalised per channel to its 1st-99th
percentiles (`preprocess`, TensorFlow, also inside the serving graph), the instance
labels, their Cellpose flows, the cells' mean diameter and each object's class.

Training crops are rotated, flipped, scaled to the network's mean diameter (30 pixels)
times 0.75-1.25, and cropped, with the flows carried along (`augment2d`). The network
(`CellposeNet`) predicts 5 × the flows and a cell-probability logit; masks come from
following the flows (`biomodels.ops.flows.masks_from_flows`). Evaluation reports
Cellpose's average precision at IoU 0.5, 0.75 and 0.9 and the CELLULAR paper's
foreground-pixel precision, recall, F1 and Jaccard, per class where the data has classes.
"""

import dataclasses
import logging
import os
import re

import numpy as np

from biomodels.errors import ConfigError, InputError
from biomodels.pipelines import readers
from biomodels.tasks import cellular_data as data
from biomodels.tasks.base import Source, Task

log = logging.getLogger(__name__)

AP_THRESHOLDS = (0.5, 0.75, 0.9)
PIXEL_SCORES = ("precision", "recall", "f1", "jaccard")


@dataclasses.dataclass(frozen=True)
class CellularConfig:
    nbase: tuple[int, ...] = (16, 32, 64, 128)
    diameter_mean: float = 30.0
    channels: tuple[int, ...] = (0, 1)
    skip_classes: tuple[str, ...] = ()
    val_pattern: str = ""
    test_pattern: str = ""
    min_masks: int = 1
    crop_size: int = 128
    scale_range: tuple[float, ...] = (0.75, 1.25)
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    warmup_epochs: int = 1
    final_halvings_epochs: int = 0
    weight_decay: float = 1e-5
    batch_size: int = 8
    epochs: int = 8
    steps_per_epoch: int = 25
    flow_threshold: float = 0.4
    cellprob_threshold: float = 0.0
    min_size: int = 15
    synthetic_images: int = 40
    synthetic_shape: tuple[int, ...] = (256, 256)


class CellularTask(Task):
    name = "cellular"
    summary = "Cellpose-style flow network for cell instance segmentation (CELLULAR autophagy data)"
    Config = CellularConfig
    data_fields = ("channels", "skip_classes", "val_pattern", "test_pattern", "min_masks", "synthetic_images",
                   "synthetic_shape")
    serving_batching = {"max_batch_size": 8, "batch_timeout_micros": 2000, "max_enqueued_batches": 32, "num_batch_threads": 2}

    @classmethod
    def presets(cls):
        return {
            "quick": CellularConfig(),
            "paper": CellularConfig(
                nbase=(32, 64, 128, 256), min_masks=5, crop_size=224, optimizer="sgd", learning_rate=0.2,
                warmup_epochs=10, final_halvings_epochs=100, batch_size=8, epochs=500, steps_per_epoch=0,
            ),
        }

    # -- raw data -------------------------------------------------------------
    def find_sources(self, input_path, config):
        self._check_config(config)
        if not os.path.isdir(input_path):
            raise InputError(input_path, "expected a folder: images/ and masks/ (CELLULAR) or NAME.tif with NAME_masks.tif")
        image_dir, mask_root = os.path.join(input_path, "images"), os.path.join(input_path, "masks")
        if os.path.isdir(image_dir) and os.path.isdir(mask_root):
            return _check_patterns(self._cellular_sources(image_dir, mask_root, config), config, input_path)
        images = data.image_files(input_path)
        pairs = [(path, data.cellpose_mask_path(path)) for path in images]
        if not images or not any(mask for _, mask in pairs):
            raise InputError(input_path, "no images with masks: expected images/ and masks/<image>/<class>/*.png "
                                         "(CELLULAR) or NAME.tif with NAME_masks.tif (Cellpose)")
        for path, mask in pairs:
            if mask is None:
                raise InputError(path, "has no masks (expected NAME_masks.tif or NAME_masks.png beside it)")
        return _check_patterns([Source(name=_stem(path), group=_stem(path), paths=(path, mask),
                                       details={"class_names": ()}) for path, mask in pairs], config, input_path)

    def _cellular_sources(self, image_dir, mask_root, config):
        images = data.image_files(image_dir)
        if not images:
            raise InputError(image_dir, "holds no TIFF or PNG images")
        folders = {}
        for path in images:
            mask_dir = os.path.join(mask_root, _stem(path))
            folders[path] = data.class_folders(mask_dir, config.skip_classes)
            if not os.path.isdir(mask_dir) or not os.listdir(mask_dir):
                raise InputError(path, f"has no masks (expected {mask_dir}/<class>/*.png)")
        class_names = tuple(sorted({name for found in folders.values() for name in found}))
        return [Source(name=_stem(path), group=_stem(path), paths=(path, os.path.join(mask_root, _stem(path))),
                       details={"class_names": class_names}) for path in images]

    def assigned_split(self, source, config):
        for split, pattern in (("test", config.test_pattern), ("val", config.val_pattern)):
            if pattern and re.search(pattern, source.name):
                return split
        return "train" if config.val_pattern or config.test_pattern else None

    def read_source(self, source, config):
        image_path, mask_path = source.paths
        class_names = list(source.details["class_names"])
        raw = data.read_cell_image(image_path, config.channels)
        if os.path.isdir(mask_path):
            folders = data.class_folders(mask_path, config.skip_classes)
            labels, classes, report = data.combine_objects(image_path, raw.shape[:2], folders, class_names)
        else:
            labels = data.check_labels(mask_path, readers.read_image(mask_path))
            data.require_same_size(mask_path, labels.shape, image_path, raw.shape)
            labels, _ = data.relabel_sequential(labels)
            classes = np.full(labels.max() + 1, data.NO_CLASS, np.int32)
            report = {"objects": int(labels.max())}
        info = {"shape": list(labels.shape), "class_names": class_names, "diameter": data.mean_diameter(labels), **report}
        if labels.max() < config.min_masks:
            info["skipped"] = {f"images with fewer than {config.min_masks} masks": 1}
            return info, []
        from biomodels.ops.flows import masks_to_flows

        example = {
            "image": self.normalise(raw),
            "labels": labels,
            "flows": masks_to_flows(labels).transpose(1, 2, 0),
            "diameter": np.float32(info["diameter"]),
            "classes": classes,
        }
        return info, [example]

    def normalise(self, image):
        """numpy [H, W, C] -> the network's input, by the graph's own `preprocess`."""
        return np.asarray(self.preprocess(image[np.newaxis], None)[0])

    def write_synthetic(self, directory, num_examples, seed, config):
        from biomodels.pipelines.synthetic import cellular as synthetic

        synthetic.write_dataset(directory, num_examples, seed, tuple(config.synthetic_shape))

    def default_synthetic_examples(self, config):
        return config.synthetic_images

    def statistics(self, examples):
        diameters, counts = [], []
        for example in examples:
            diameters.append(float(example["diameter"]))
            counts.append(int(example["labels"].max()))
        return {"mean_diameter": float(np.mean(diameters)) if diameters else 0.0, "cells": int(np.sum(counts)),
                "images": len(counts)}

    # -- model ----------------------------------------------------------------
    def build_model(self, config, manifest):
        from biomodels.models import CellposeNet

        return CellposeNet(nchan=len(config.channels), nbase=config.nbase, diam_mean=config.diameter_mean)

    def check_initial_weights(self, path, config):
        super().check_initial_weights(path, config)
        if _is_cellpose_checkpoint(path):
            self._fitting_checkpoint(path, config)

    def initial_model(self, path, config):
        """A Cellpose PyTorch checkpoint (not a run or .keras file) as a Keras model, for --init_from."""
        from biomodels.models import CellposeNet

        if not _is_cellpose_checkpoint(path):
            return None
        model = CellposeNet(nchan=len(config.channels), nbase=config.nbase, diam_mean=config.diameter_mean)
        model.load_cellpose_state(self._fitting_checkpoint(path, config), path)
        return model

    def _fitting_checkpoint(self, path, config):
        """The checkpoint's state dict, if its CPnet has this configuration's widths and channels."""
        from biomodels.models.cellpose import cellpose_input_channels, cellpose_widths
        from biomodels.models.torch_checkpoint import read_state_dict

        state = read_state_dict(path)
        widths = cellpose_widths(state, path)
        if widths != tuple(config.nbase):
            raise InputError(path, f"is a CPnet of widths {list(widths)}, but this configuration builds "
                                   f"{list(config.nbase)}; use --preset=paper or --set nbase=" + ",".join(map(str, widths)))
        channels = cellpose_input_channels(state)
        if channels != len(config.channels):
            raise InputError(path, f"is a CPnet for {channels} channels, but --set channels= gives {len(config.channels)}")
        return state

    def compile_arguments(self, config, manifest, steps_per_epoch):
        import keras

        from biomodels.models import CellposeLoss
        from biomodels.models.cellpose import CellposeLearningRate

        schedule = CellposeLearningRate(config.learning_rate, steps_per_epoch, config.epochs, config.warmup_epochs,
                                    config.final_halvings_epochs)
        if config.optimizer == "sgd":
            optimizer = keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=config.weight_decay)
        else:
            optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
        return {"loss": CellposeLoss(), "optimizer": optimizer}

    def preprocess(self, inputs, config=None):
        """[N, H, W, C] -> each channel of each image scaled so its 1st and 99th
        percentiles become 0 and 1 (channels with no spread become 0)."""
        import tensorflow as tf

        inputs = tf.cast(inputs, tf.float32)
        low, high = percentiles(inputs, 1.0), percentiles(inputs, 99.0)
        spread = high - low
        scaled = (inputs - low) / tf.maximum(spread, 1e-6)
        return tf.where(spread > 1e-6, scaled, tf.zeros_like(scaled))

    def augment(self, example, seed, config):
        import tensorflow as tf

        from biomodels.pipelines.augment2d import transform_flow_example

        seeds = tf.random.experimental.stateless_split(seed, num=2)
        diameter = tf.cast(example["diameter"], tf.float32)
        to_mean = tf.where(diameter > 0, config.diameter_mean / tf.maximum(diameter, 1e-3), 1.0)
        scale = to_mean * tf.random.stateless_uniform([], seeds[0], *config.scale_range)
        image, labels, flows = transform_flow_example(example["image"], example["labels"], example["flows"], seeds[1],
                                                      config.crop_size, scale)
        return {**example, "image": image, "labels": labels, "flows": flows}

    def model_io(self, example, config):
        """(normalised image, targets [H, W, 5]: dY, dX, cell mask, instance label, class
        of the pixel's object), padded to a multiple of the network's size step with
        label -1, which the loss and the metrics leave out."""
        import tensorflow as tf

        labels = tf.cast(example["labels"], tf.int32)
        pixel_classes = tf.gather(tf.cast(example["classes"], tf.int32), labels)
        targets = tf.concat([
            tf.cast(example["flows"], tf.float32),
            tf.cast(labels > 0, tf.float32)[..., tf.newaxis],
            tf.cast(labels, tf.float32)[..., tf.newaxis],
            tf.cast(pixel_classes, tf.float32)[..., tf.newaxis],
        ], axis=-1)
        multiple = size_multiple(config)
        height, width = tf.shape(labels)[0], tf.shape(labels)[1]
        pad = [[0, (multiple - height % multiple) % multiple], [0, (multiple - width % multiple) % multiple]]
        image = tf.pad(example["image"], pad + [[0, 0]])
        targets = tf.pad(targets, pad + [[0, 0]], constant_values=-1.0)
        return image, targets

    def batch(self, data, batch_size, training):
        if training:
            return data.batch(batch_size, drop_remainder=True)
        return data.padded_batch(batch_size, padding_values=(0.0, -1.0))

    # -- results --------------------------------------------------------------
    def calibrate(self, model, dataset, manifest, config):
        return {"training_diameter": manifest["statistics"]["mean_diameter"]}

    def evaluate(self, model, dataset, manifest, config, calibration=None):
        from biomodels.export.savedmodel import Predictor
        from biomodels.tasks.cellular_outputs import score_images, segment

        signature = Predictor(self.serving_functions(model, config), "model").signature("normalised")
        diameter = (calibration or {}).get("training_diameter") or manifest["statistics"]["mean_diameter"]
        true_labels, predicted, pixel_classes = [], [], []
        for inputs, targets in dataset:
            for image, target in zip(np.asarray(inputs), np.asarray(targets)):
                valid = target[..., 3] >= 0
                height, width = int(valid.any(axis=1).sum()), int(valid.any(axis=0).sum())
                image, target = image[:height, :width], target[:height, :width]
                masks, _ = segment(signature, image, config.diameter_mean / max(diameter, 1e-3), {},
                                   thresholds=_thresholds(config))
                true_labels.append(target[..., 3].astype(np.int32))
                pixel_classes.append(target[..., 4].astype(np.int32))
                predicted.append(masks)
        class_names = manifest["sources"][0].get("class_names", []) if manifest["sources"] else []
        return score_images(true_labels, predicted, pixel_classes, class_names, AP_THRESHOLDS)

    def metrics_table(self, metrics):
        from biomodels.tasks.cellular_outputs import metrics_rows

        return metrics_rows(metrics, AP_THRESHOLDS)

    def summary_images(self, model, inputs, targets):
        from biomodels.tasks.cellular_outputs import flow_colours

        maps = np.asarray(model(inputs, training=False))
        images = np.clip(np.asarray(inputs)[..., 0], 0, 1)
        grey = (np.repeat(images[..., np.newaxis], 3, axis=-1) * 255).astype(np.uint8)
        targets = np.asarray(targets)
        targets = np.where(targets[..., 3:4] >= 0, targets, 0.0)  # padding shows as background
        return {
            "input": grey,
            "true_flows": np.stack([flow_colours(t[..., :2].transpose(2, 0, 1)) for t in targets]),
            "predicted_flows": np.stack([flow_colours(m[..., :2].transpose(2, 0, 1) / 5) for m in maps]),
            "cell_probability": (np.repeat(1 / (1 + np.exp(-maps[..., 2:3])), 3, axis=-1) * 255).astype(np.uint8),
        }

    def serving_functions(self, model, config, calibration=None):
        import tensorflow as tf

        multiple = size_multiple(config)
        network = model.with_style()
        channels = len(config.channels)

        def run(x):
            height, width = tf.shape(x)[1], tf.shape(x)[2]
            # exactly the network's channels: extra ones dropped, missing ones zero
            x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, tf.maximum(channels - tf.shape(x)[3], 0)]])[..., :channels]
            x = tf.pad(x, [[0, 0], [0, (multiple - height % multiple) % multiple],
                           [0, (multiple - width % multiple) % multiple], [0, 0]])
            maps, style = network(x, training=False)
            maps = tf.cast(maps, tf.float32)[:, :height, :width]
            return {"flows": maps[..., :2] / 5.0, "cellprob": maps[..., 2], "style": tf.cast(style, tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images")])
        def serve(images):
            return run(self.preprocess(images, config))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images")])
        def normalised(images):
            return run(images)

        return {"serving_default": serve, "normalised": normalised}

    def warmup_inputs(self, config):
        rng = np.random.default_rng(0)
        shape = (config.crop_size, config.crop_size, len(config.channels))
        return [("serving_default", {"images": rng.uniform(0, 1000, size=(n, *shape)).astype(np.float32)})
                for n in (1, 4)]

    def bioimageio_description(self, config, pixel_size=None):
        multiple = size_multiple(config)

        def space(axis, of_input=False):
            size = {"tensor_id": "images", "axis_id": axis} if of_input else {"min": multiple, "step": multiple}
            return {"type": "space", "id": axis, "size": size, "unit": "micrometer", "scale": float(pixel_size or 1.0)}

        names = ["cytoplasm", "nucleus"][:len(config.channels)]
        return {
            "name": "biomodels cellular Cellpose network",
            "description": "Cellpose's CPnet: flows to each cell's centre and a cell-probability logit, from which "
                           "biomodels.ops.flows.masks_from_flows builds instance masks.",
            "tags": ["cell-segmentation", "instance-segmentation", "cellpose", "fluorescence", "2d", "tensorflow", "biomodels"],
            "cite": [
                {"text": "Stringer et al., Cellpose: a generalist algorithm for cellular segmentation, Nature Methods 18, "
                         "100-106 (2021)", "doi": "10.1038/s41592-020-01018-x"},
                {"text": "Al Outa et al., CELLULAR, a cell autophagy imaging dataset, Scientific Data 10 (2023)",
                 "doi": "10.1038/s41597-023-02687-x"},
            ],
            "inputs": [{
                "id": "images", "description": "fluorescence image, cytoplasm (and nucleus) channel, any intensity scale",
                "axes": [{"type": "batch"}, space("y"), space("x"), {"type": "channel", "channel_names": names}],
                "preprocessing": [{"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": 1.0,
                                                                   "max_percentile": 99.0}}],
            }],
            "outputs": [
                {"id": "flows", "axes": [{"type": "batch"}, space("y", True), space("x", True),
                                         {"type": "channel", "channel_names": ["dy", "dx"]}]},
                {"id": "cellprob", "axes": [{"type": "batch"}, space("y", True), space("x", True)]},
                {"id": "style", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": [
                    f"style{i}" for i in range(config.nbase[-1])]}]},
            ],
        }

    def predict_files(self, predictor, input_path, output_dir, options):
        from biomodels.tasks.cellular_outputs import predict_images

        return predict_images(self, predictor, input_path, output_dir, options)

    def _check_config(self, config):
        from biomodels.config import check_choice

        check_choice("optimizer", config.optimizer, ("sgd", "adamw"))
        if config.crop_size % size_multiple(config):
            raise ConfigError(f"--set crop_size={config.crop_size}: must be a multiple of {size_multiple(config)}")
        if len(config.scale_range) != 2 or not 0 < config.scale_range[0] <= config.scale_range[1]:
            raise ConfigError(f"--set scale_range={config.scale_range}: give two factors, low,high, with 0 < low <= high")
        if not 1 <= len(config.channels) <= 2:
            raise ConfigError(f"--set channels={config.channels}: give one or two channel indices (cytoplasm, nucleus)")
        for name in ("val_pattern", "test_pattern"):
            try:
                re.compile(getattr(config, name))
            except re.error as error:
                raise ConfigError(f"--set {name}={getattr(config, name)!r} is not a regular expression ({error})") from None


def _is_cellpose_checkpoint(path):
    """Not a run directory nor a .keras file: a PyTorch state dict."""
    return not (path.endswith(".keras") or os.path.isdir(path))


def _check_patterns(sources, config, input_path):
    """The sources, unless a split pattern matches none of their names."""
    for name in ("val_pattern", "test_pattern"):
        pattern = getattr(config, name)
        if pattern and not any(re.search(pattern, source.name) for source in sources):
            raise InputError(input_path, f"no image name matches --set {name}={pattern}")
    return sources


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _thresholds(config):
    return {"flow_threshold": config.flow_threshold, "cellprob_threshold": config.cellprob_threshold,
            "min_size": config.min_size}


def size_multiple(config):
    return 2 ** (len(config.nbase) - 1)


def percentiles(images, q):
    """[N, 1, 1, C]: the q-th percentile of each channel of each image, interpolated
    linearly between order statistics as numpy.percentile does."""
    import tensorflow as tf

    shape = tf.shape(images)
    values = tf.sort(tf.reshape(tf.transpose(images, [0, 3, 1, 2]), [shape[0], shape[3], -1]), axis=-1)
    count = tf.shape(values)[-1]
    position = q / 100.0 * tf.cast(count - 1, tf.float32)
    below = tf.cast(tf.floor(position), tf.int32)
    above = tf.minimum(below + 1, count - 1)
    fraction = position - tf.cast(below, tf.float32)
    result = values[..., below] * (1 - fraction) + values[..., above] * fraction
    return result[:, tf.newaxis, tf.newaxis, :]


TASK = CellularTask()
