"""cryoet: 2-D U-Net annotation of cellular cryo-electron tomograms, slice by slice.

Raw data: `NAME.mrc` tomograms with `NAME_labels.mrc` label volumes (0..5), or the
study's 2-D layout, `Image/` and `label/` folders of same-named TIFF/PNG slices.
Each tomogram is normalised (zero mean, unit variance), its slices are cut into
square tiles (reflection-padded at the borders, padding labelled 255 and ignored),
and the split keeps every tomogram within one split.

Preprocessing in the graph standardises each image the network sees; prediction
tiles each slice with overlap and blends the tiles, and writes `NAME_labels.mrc`
(and one probability MRC per feature class) with the input's voxel size and origin.
"""

import dataclasses
import glob
import os

import numpy as np

from biomodels.errors import ConfigError, InputError
from biomodels.pipelines import readers
from biomodels.tasks.base import Source, Task

CLASS_NAMES = ("background", "microtubule", "ribosome", "double_membrane", "single_membrane", "carbon_edge")
NUM_CLASSES = len(CLASS_NAMES)
FEATURE_CLASSES = tuple(range(1, NUM_CLASSES))
IGNORE_LABEL = 255
LABEL_COLOURS = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]], np.uint8
)


@dataclasses.dataclass(frozen=True)
class CryoETConfig:
    base_filters: int = 8
    depth: int = 4
    dropout: float = 0.0
    tile_size: int = 128
    exclude_slices: int = 0
    class_weights: tuple[float, ...] = ()
    learning_rate: float = 3e-3
    lr_schedule: str = "cosine"
    batch_size: int = 8
    epochs: int = 10
    steps_per_epoch: int = 80
    noise_augmentation: float = 0.1
    synthetic_tomograms: int = 16
    synthetic_shape: tuple[int, ...] = (24, 256, 256)


class CryoETTask(Task):
    name = "cryoet"
    summary = "2-D U-Net annotation of cellular cryo-electron tomograms (MRC)"
    Config = CryoETConfig
    checkpoint_monitor = ("val_feature_iou", "max")
    data_fields = ("tile_size", "exclude_slices", "synthetic_tomograms", "synthetic_shape")
    # a request is a few large slices: small batches, a short wait
    serving_batching = {"max_batch_size": 4, "batch_timeout_micros": 2000, "max_enqueued_batches": 32, "num_batch_threads": 2}

    @classmethod
    def presets(cls):
        return {
            "quick": CryoETConfig(),
            "paper": CryoETConfig(
                base_filters=64, depth=5, dropout=0.5, tile_size=512, learning_rate=1e-3, lr_schedule="constant",
                batch_size=4, epochs=50, steps_per_epoch=0, noise_augmentation=0.0,
            ),
        }

    # -- raw data -------------------------------------------------------------
    def find_sources(self, input_path, config):
        if not os.path.exists(input_path):
            raise InputError(input_path, "no such file or directory")
        if os.path.isfile(input_path):
            return [self._mrc_source(input_path)]
        image_dir, label_dir = os.path.join(input_path, "Image"), os.path.join(input_path, "label")
        if os.path.isdir(image_dir):
            return self._slice_sources(image_dir, label_dir)
        tomograms = sorted(
            path for path in glob.glob(os.path.join(input_path, "*.mrc")) if not path.endswith("_labels.mrc")
        )
        if not tomograms:
            raise InputError(input_path, "no tomograms: expected NAME.mrc with NAME_labels.mrc, or Image/ and label/ folders")
        return [self._mrc_source(path) for path in tomograms]

    def _mrc_source(self, path):
        labels = path[: -len(".mrc")] + "_labels.mrc"
        if not path.endswith(".mrc"):
            raise InputError(path, "expected an .mrc tomogram")
        if not os.path.isfile(labels):
            raise InputError(path, f"no label volume {os.path.basename(labels)} beside it")
        name = os.path.basename(path)[: -len(".mrc")]
        return Source(name=name, group=name, paths=(path, labels))

    def _slice_sources(self, image_dir, label_dir):
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

    def read_source(self, source, config):
        image_path, label_path = source.paths
        voxel_size = None
        if image_path.endswith(".mrc"):
            volume = readers.read_mrc(image_path)
            density, labels, voxel_size = volume.data, readers.read_mrc(label_path).data, list(volume.voxel_size)
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

    def write_synthetic(self, directory, num_examples, seed, config):
        from biomodels.pipelines.synthetic import cryoet as synthetic

        synthetic.write_dataset(directory, num_examples, seed, tuple(config.synthetic_shape))

    def default_synthetic_examples(self, config):
        return config.synthetic_tomograms

    def statistics(self, examples):
        counts = np.zeros(NUM_CLASSES, np.int64)
        for example in examples:
            labels = example["labels"]
            counts += np.bincount(labels[labels != IGNORE_LABEL].ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
        frequencies = counts / max(1, counts.sum())
        return {"class_names": list(CLASS_NAMES), "class_pixel_counts": counts.tolist(), "class_frequencies": frequencies.tolist()}

    # -- model ----------------------------------------------------------------
    def build_model(self, config, manifest):
        from biomodels.models import CryoETUNet

        return CryoETUNet(num_classes=NUM_CLASSES, base_filters=config.base_filters, depth=config.depth, dropout=config.dropout)

    def class_weights(self, config, manifest):
        """Given weights, or inverse square-root class frequencies of the training
        labels, scaled so an average training pixel weighs 1."""
        if config.class_weights:
            if len(config.class_weights) != NUM_CLASSES:
                raise ConfigError(f"class_weights needs {NUM_CLASSES} values, got {len(config.class_weights)}")
            return [float(w) for w in config.class_weights]
        frequencies = np.asarray(manifest["statistics"]["class_frequencies"], np.float64)
        frequencies = np.maximum(frequencies, 1e-4)
        weights = frequencies**-0.5
        return (weights / np.sum(frequencies * weights)).tolist()

    def compile_arguments(self, config, manifest, steps_per_epoch):
        import keras

        from biomodels.models import WeightedSparseCategoricalCrossentropy

        learning_rate = config.learning_rate
        if config.lr_schedule == "cosine":
            learning_rate = keras.optimizers.schedules.CosineDecay(
                config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.05
            )
        return {
            "loss": WeightedSparseCategoricalCrossentropy(self.class_weights(config, manifest), IGNORE_LABEL),
            "optimizer": keras.optimizers.Adam(learning_rate),
            "metrics": [
                keras.metrics.IoU(
                    NUM_CLASSES, target_class_ids=list(FEATURE_CLASSES), ignore_class=IGNORE_LABEL,
                    sparse_y_pred=False, name="feature_iou",
                )
            ],
        }

    def preprocess(self, inputs, config=None):
        """Standardise each image of a [N, H, W, C] batch to zero mean, unit variance."""
        import tensorflow as tf

        inputs = tf.cast(inputs, tf.float32)
        mean, variance = tf.nn.moments(inputs, axes=[1, 2, 3], keepdims=True)
        return (inputs - mean) / tf.sqrt(variance + 1e-6)

    def augment(self, example, seed, config):
        import tensorflow as tf

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

    def model_io(self, example, config):
        import tensorflow as tf

        image = self.preprocess(example["image"][tf.newaxis, ..., tf.newaxis], config)[0]
        return image, tf.cast(example["labels"], tf.int32)

    # -- results --------------------------------------------------------------
    def evaluate(self, model, dataset, manifest, config, calibration=None):
        import tensorflow as tf

        from biomodels.ops.segmentation_metrics import class_scores, confusion_matrix

        predict = tf.function(lambda x: tf.argmax(model(x, training=False), axis=-1))
        confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        for inputs, targets in dataset:
            confusion += confusion_matrix(targets.numpy(), predict(inputs).numpy(), NUM_CLASSES, IGNORE_LABEL)
        scores = class_scores(confusion)
        metrics = {}
        for index, name in enumerate(CLASS_NAMES):
            metrics[f"f1/{name}"] = float(scores["f1"][index])
            metrics[f"iou/{name}"] = float(scores["iou"][index])
        features = list(FEATURE_CLASSES)
        metrics["mean_f1_features"] = float(np.nanmean(scores["f1"][features]))
        metrics["mean_iou_features"] = float(np.nanmean(scores["iou"][features]))
        metrics["pixel_accuracy"] = float(np.trace(confusion) / max(1, confusion.sum()))
        metrics["pixels"] = int(confusion.sum())
        return metrics

    def metrics_table(self, metrics):
        rows = [(name, metrics[f"f1/{name}"], metrics[f"iou/{name}"]) for name in CLASS_NAMES]
        rows.append(("mean of the 5 features", metrics["mean_f1_features"], metrics["mean_iou_features"]))
        return ("class", "F1", "IoU"), rows

    def summary_images(self, model, inputs, targets):
        predictions = np.argmax(model(inputs, training=False), axis=-1)
        images = np.asarray(inputs)[..., 0]
        low, high = np.percentile(images, [1, 99])
        grey = (np.clip((images - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
        return {
            "input": np.repeat(grey[..., np.newaxis], 3, axis=-1),
            "ground_truth": colour_labels(np.asarray(targets)),
            "prediction": colour_labels(predictions),
        }

    def serving_functions(self, model, config, calibration=None):
        import tensorflow as tf

        multiple = size_multiple(config)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="images")])
        def serve(images):
            height, width = tf.shape(images)[1], tf.shape(images)[2]
            pad_h = (multiple - height % multiple) % multiple
            pad_w = (multiple - width % multiple) % multiple
            # normalise before padding, so the padding does not shift the statistics; pad with
            # the mean (0), which works for images of any size, even smaller than the padding
            x = self.preprocess(images, config)
            x = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
            probabilities = tf.cast(model(x, training=False), tf.float32)[:, :height, :width, :]
            return {"probabilities": probabilities, "labels": tf.argmax(probabilities, axis=-1, output_type=tf.int32)}

        return {"serving_default": serve}

    def warmup_inputs(self, config):
        rng = np.random.default_rng(0)
        tile = config.tile_size
        return [("serving_default", {"images": rng.normal(size=(n, tile, tile, 1)).astype(np.float32)}) for n in (1, 4)]

    def bioimageio_description(self, config, pixel_size=None):
        """Space axes in ångström, as MRC voxel sizes are."""
        multiple = size_multiple(config)

        def space(axis, of_input=False):
            size = {"tensor_id": "images", "axis_id": axis} if of_input else {"min": multiple, "step": multiple}
            return {"type": "space", "id": axis, "size": size, "unit": "angstrom", "scale": float(pixel_size or 1.0)}

        return {
            "name": "biomodels cryoet U-Net",
            "description": "2-D U-Net that labels cellular cryo-electron tomogram slices: background, microtubule, "
                           "ribosome, double membrane, single membrane, carbon edge.",
            "tags": ["cryo-electron-tomography", "semantic-segmentation", "2d", "tensorflow", "biomodels"],
            "cite": [{"text": "Chen et al., Convolutional neural networks for automated annotation of cellular "
                              "cryo-electron tomograms, Nature Methods 14, 983-985 (2017)", "doi": "10.1038/nmeth.4405"}],
            "inputs": [{
                "id": "images", "description": "tomogram slices, any intensity scale",
                "axes": [{"type": "batch"}, space("y"), space("x"), {"type": "channel", "channel_names": ["density"]}],
                "preprocessing": [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x", "channel"]}}],
            }],
            "outputs": [
                {"id": "probabilities", "axes": [{"type": "batch"}, space("y", True), space("x", True),
                                                 {"type": "channel", "channel_names": list(CLASS_NAMES)}]},
                {"id": "labels", "axes": [{"type": "batch"}, space("y", True), space("x", True)], "data": {"type": "int32"}},
            ],
        }

    def predict_files(self, predictor, input_path, output_dir, options):
        return predict_tomograms(predictor, input_path, output_dir, options)


def size_multiple(config):
    """Image height and width must be multiples of this for the U-Net of `config`."""
    return 2 ** (config.depth - 1)


def normalise_tomogram(density):
    """(normalised float32 volume, mean, std) with zero mean and unit variance."""
    density = density.astype(np.float32)
    mean, std = float(density.mean()), float(density.std())
    return (density - mean) / max(std, 1e-6), mean, std


def colour_labels(labels):
    """RGB uint8 images of class labels (ignored pixels white)."""
    labels = np.asarray(labels)
    colours = np.concatenate([LABEL_COLOURS, np.full((256 - NUM_CLASSES, 3), 255, np.uint8)])
    return colours[labels.astype(np.uint8)]


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


def predict_tomograms(predictor, input_path, output_dir, options):
    """Label every MRC tomogram under `input_path`; write NAME_labels.mrc (8-bit) and,
    with options["probabilities"], NAME_<class>.mrc per feature class."""
    from biomodels.ops.tiling import predict_tiled
    from biomodels.progress import progress_bar

    if os.path.isdir(input_path):
        paths = sorted(p for p in glob.glob(os.path.join(input_path, "*.mrc")) if not p.endswith("_labels.mrc"))
        if not paths:
            raise InputError(input_path, "no .mrc tomograms in this directory")
    else:
        paths = [input_path]
    volumes = [(path, readers.read_mrc(path)) for path in paths]
    for path, volume in volumes:
        readers.require_finite(path, volume.data)
    serve = predictor.signature("serving_default")
    # tiles the size the model was trained on, so per-image normalisation sees alike images
    tile = options.get("tile") or predictor.config.get("tile_size", 512)
    written = []
    for path, volume in volumes:
        density, _, _ = normalise_tomogram(volume.data)
        probabilities = np.zeros(density.shape + (NUM_CLASSES,), np.float32)
        bar = progress_bar(len(density), f"{os.path.basename(path)} slices")
        for z, image in enumerate(density):
            probabilities[z] = predict_tiled(
                image[..., np.newaxis], lambda tiles: serve(images=tiles)["probabilities"],
                tile=tile, overlap=options.get("overlap", 64), batch_size=options.get("batch_size", 4),
            )
            bar.update(z + 1)
        stem = os.path.join(output_dir, os.path.basename(path)[: -len(".mrc")])
        # MRC mode 0 (8-bit): labels 0..5 read the same whether a tool takes it as signed or not
        outputs = {f"{stem}_labels.mrc": np.argmax(probabilities, axis=-1).astype(np.int8)}
        if options.get("probabilities"):
            for index in FEATURE_CLASSES:
                outputs[f"{stem}_{CLASS_NAMES[index]}.mrc"] = probabilities[..., index]
        for out_path, data in outputs.items():
            readers.write_mrc(out_path, data, volume.voxel_size, volume.origin)
            written.append(out_path)
    return written


TASK = CryoETTask()
