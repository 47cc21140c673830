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
statistics (mean, spread and percentiles of the raw, unstretched intensities) is shown
beside it as a baseline.
After training, a classifier on the codes of all training and validation cells is kept
in calibration.json and in the export, where it serves the `classify` signature and
gives the direction for in-silico cells.

Modules: config, data (crops, metadata, efficiency table, TF preprocessing), inference
(codes, decoding, interpolation, the classifier; `LCHModel`), metrics
(leave-one-line-out scores, the deployed classifier), serving (encode, decode, classify,
bioimage.io), outputs (embeddings, in-silico cells, interpolations, TensorBoard images).
"""

from biomodels import config as config_lib
from biomodels.errors import ConfigError
from biomodels.tasks.base import Option, Task
from biomodels.tasks.lch import config as config_module
from biomodels.tasks.lch import data, inference, outputs, serving
from biomodels.tasks.lch import metrics as scores
from biomodels.tasks.lch.config import LCHConfig
from biomodels.tasks.lch.outputs import MODES


class LCHTask(Task):
    name = "lch"
    summary = "adversarial autoencoder of label-free melanoma cells, latent classification of metastatic efficiency"
    Config = LCHConfig
    checkpoint_monitor = ("val_reconstruction_loss", "min")
    default_split = (0.7, 0.15, 0.15)
    data_fields = ("image_size", "filename_pattern", "cell_type_field", "efficiency_csv", "synthetic_cells",
                   "synthetic_cell_lines")
    summary_examples = 64
    model_io_on_batches = True
    training_reads_targets = False
    training_arrays_scale = 4  # 8-bit crops held as float32
    model_class = inference.LCHModel
    calibration_fields = {"classifier": dict}
    predict_options = (
        Option("mode", "string", None, f"One of {', '.join(MODES)}: embeddings.csv (the default), cells decoded along "
                                       "the classifier direction, or decoded codes between two --cells."),
        Option("cells", "list", None, "Crop file names for --mode=insilico (default: the two most confidently low and "
                                      "high) or the two for --mode=interpolate."),
        Option("steps", "integer", 9, "Decoded images per in-silico path or interpolation.", lower_bound=2),
        Option("batch_size", "integer", 32, "Crops per request.", lower_bound=1),
    )

    data, serving = data, serving
    # the modules' functions this task is made of, where they need nothing of the task
    presets = staticmethod(config_module.presets)
    fit_crop = staticmethod(data.fit_crop)
    statistics_sums = staticmethod(data.statistics_sums)
    statistics_from_sums = staticmethod(data.statistics_from_sums)

    # -- raw data -------------------------------------------------------------
    def write_synthetic(self, directory, num_examples, seed):
        from biomodels.pipelines.synthetic import lch as synthetic

        synthetic.write_dataset(directory, num_examples, seed, self.config.synthetic_cell_lines)

    def default_synthetic_examples(self):
        return self.config.synthetic_cells

    def split_by_example(self):
        return True

    def stratum(self, example):
        return int(example["cell_line"])

    # -- model ----------------------------------------------------------------
    def build_model(self):
        from biomodels.models import AdversarialAutoencoder

        config = self.config
        multiple = AdversarialAutoencoder.size_multiple_for(config.filters)
        if config.image_size % multiple:
            raise ConfigError(f"--set image_size={config.image_size} must be a multiple of {multiple}: "
                              f"each of the {len(config.filters)} encoder layers halves it")
        return AdversarialAutoencoder(config.image_size, config.latent_dim, config.filters, config.discriminator_units,
                                      config.adversarial_weight, seed=self.manifest.provenance.get("seed", 0))

    def compile_arguments(self, steps_per_epoch):
        import keras

        config = self.config
        return {"optimizer": keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1),
                "discriminator_optimizer": keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1)}

    def training_arrays(self, examples):
        return data.training_arrays(examples, self.config)

    def epoch_batches(self, arrays, seed, batch_size):
        return data.epoch_batches(arrays, seed, batch_size, self.config)

    def preprocess(self, inputs):
        """Gray crops [batch, height, width, 1] with intensities in [0, 1] (8-bit values
        / 255): centre-cropped to a square, resized to the model's size (bilinear with
        antialiasing), then with `intensity_normalisation=percentile` each crop's 1st to
        99th percentile stretched to [0, 1]; clipped to [0, 1]."""
        return data.preprocess(inputs, self.config)

    # -- results --------------------------------------------------------------
    def calibrate(self, model, dataset):
        """{"classifier", "classifier_l2", "classifier_cells"}: the classifier of
        efficiency on the codes of all training and validation cells, which serves the
        `classify` signature and gives the in-silico direction."""
        return scores.calibrate(self, model, dataset)

    def evaluate(self, model, dataset, split="test"):
        return scores.latent_metrics(self, model, dataset)

    def metrics_table(self, metrics):
        return ("metric", "latent codes", "image statistics baseline"), scores.metrics_rows(metrics)

    def summary_images(self, model, inputs, targets):
        return outputs.summary_images(model, inputs)

    def predict_files(self, predictor, input_path, output_dir, options):
        return outputs.write_predictions(predictor, config_lib.model_config(self, predictor), input_path, output_dir, options)


TASK = LCHTask()
