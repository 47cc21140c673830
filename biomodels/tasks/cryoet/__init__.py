"""cryoet: 2-D U-Net annotation of cellular cryo-electron tomograms, slice by slice.

Raw data: `NAME.mrc` tomograms with `NAME_labels.mrc` label volumes (0..5), or the
study's 2-D layout, `Image/` and `label/` folders of same-named TIFF/PNG slices.
Each tomogram is normalised (zero mean, unit variance), its slices are cut into
square tiles (reflection-padded at the borders, padding labelled 255 and ignored),
and the split keeps every tomogram within one split.

The network sees images standardised with their whole tomogram's statistics, never a
tile's own; prediction runs each slice whole or, when it is large, in a few large tiles
with overlap, blended, and writes `NAME_labels.mrc`
(and one probability MRC per feature class) with the input's voxel size and origin.

Modules: config (Config, presets, classes), data (readers, TF preprocessing and
augmentation), inference (a tomogram to its labels and probabilities; `CryoETModel`),
metrics, serving (signatures, warm-up, bioimage.io), outputs (files of predict,
TensorBoard images).
"""

import numpy as np

from biomodels.errors import ConfigError
from biomodels.tasks.base import Option, Task, tiling_options
from biomodels.tasks.cryoet import config as config_module
from biomodels.tasks.cryoet import data, inference, outputs, serving
from biomodels.tasks.cryoet import metrics as scores
from biomodels.tasks.cryoet.config import FEATURE_CLASSES, IGNORE_LABEL, NUM_CLASSES, CryoETConfig


class CryoETTask(Task):
    name = "cryoet"
    summary = "2-D U-Net annotation of cellular cryo-electron tomograms (MRC)"
    Config = CryoETConfig
    checkpoint_monitor = ("val_feature_iou", "max")
    evaluation_examples = 256
    statistics_fields = {"class_frequencies": list}
    data_fields = ("tile_size", "exclude_slices", "synthetic_tomograms", "synthetic_shape")
    # a request is a few large slices: small batches, a short wait
    serving_batching = {"max_batch_size": 4, "batch_timeout_micros": 2000, "max_enqueued_batches": 32, "num_batch_threads": 2}
    model_class = inference.CryoETModel
    predict_options = (
        Option("probabilities", "bool", False, "Also write one probability MRC per feature class."),
        *tiling_options("the whole slice up to 1.5 million pixels, else the fewest even tiles of at most that"),
        Option("block", "integer", None, "Spread each tomogram over the workers (--scheduler) in slabs of this many "
                                         "Z slices, each a task; the files are those of the tomogram whole.",
               lower_bound=1),
    )

    data, serving = data, serving
    # the modules' functions this task is made of, where they need nothing of the task
    presets = staticmethod(config_module.presets)
    find_sources = staticmethod(data.find_sources)
    predict_inputs = staticmethod(data.predict_inputs)
    statistics_sums = staticmethod(data.class_pixel_sums)
    statistics_from_sums = staticmethod(data.class_statistics)
    preprocess = staticmethod(data.preprocess)
    model_io = staticmethod(data.model_io)
    metrics_table = staticmethod(scores.metrics_table)
    summary_images = staticmethod(outputs.summary_images)
    bioimageio_output = staticmethod(serving.bioimageio_output)
    predict_files = staticmethod(outputs.predict_tomograms)

    # -- raw data -------------------------------------------------------------
    def write_synthetic(self, directory, num_examples, seed):
        from biomodels.pipelines.synthetic import cryoet as synthetic

        synthetic.write_dataset(directory, num_examples, seed, tuple(self.config.synthetic_shape))

    def default_synthetic_examples(self):
        return self.config.synthetic_tomograms

    # -- model ----------------------------------------------------------------
    def build_model(self):
        from biomodels.models import CryoETUNet

        config = self.config
        return CryoETUNet(num_classes=NUM_CLASSES, base_filters=config.base_filters, depth=config.depth, dropout=config.dropout)

    def class_weights(self):
        """Given weights, or inverse square-root class frequencies of the training
        labels (the manifest's), scaled so an average training pixel weighs 1."""
        config = self.config
        if config.class_weights:
            if len(config.class_weights) != NUM_CLASSES:
                raise ConfigError(f"class_weights needs {NUM_CLASSES} values, got {len(config.class_weights)}")
            return [float(w) for w in config.class_weights]
        frequencies = np.asarray(self.manifest.statistics["class_frequencies"], np.float64)
        frequencies = np.maximum(frequencies, 1e-4)
        weights = frequencies**-0.5
        return (weights / np.sum(frequencies * weights)).tolist()

    def compile_arguments(self, steps_per_epoch):
        import keras

        from biomodels.models import WeightedSparseCategoricalCrossentropy
        from biomodels.models.schedules import cosine_decay

        config = self.config
        learning_rate = config.learning_rate
        if config.lr_schedule == "cosine":
            learning_rate = cosine_decay(config.learning_rate, config.epochs, steps_per_epoch)
        return {
            "loss": WeightedSparseCategoricalCrossentropy(self.class_weights(), IGNORE_LABEL),
            "optimizer": keras.optimizers.Adam(learning_rate),
            "metrics": [
                keras.metrics.IoU(
                    NUM_CLASSES, target_class_ids=list(FEATURE_CLASSES), ignore_class=IGNORE_LABEL,
                    sparse_y_pred=False, name="feature_iou",
                )
            ],
        }

    # -- results --------------------------------------------------------------
    def predicts_in_blocks(self, options):
        return options.get("block") is not None

    def predict_in_blocks(self, executor, model, input_path, output_dir, options):
        from biomodels.tasks.cryoet.slabs import predict_in_slabs

        return predict_in_slabs(executor, self.name, model, input_path, output_dir, options)

    def evaluation_part(self, model, dataset, split, portion):
        return scores.confusion_part(model, dataset)

    def metrics_from_parts(self, parts, split):
        return scores.metrics_from_confusion(parts)


TASK = CryoETTask()
