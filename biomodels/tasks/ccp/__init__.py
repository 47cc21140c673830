"""ccp: is a clathrin-coated-pit track auxilin-positive? A classifier that ranks tracks
so that people review the top of the list instead of every track.

Raw data: cmeAnalysis output (a folder of cells, `Cell*/…/ProcessedTracks.mat` as MATLAB
v5, or `…/lifetimeData.mat` as MATLAB v7.3) or CSV files with one row per track (see
biomodels.pipelines.tracks). Labels come from a `label` column when there is one, else
from the auxilin rule: three consecutive frames with an auxilin detection p-value of at
most 0.05, the run starting in the second half of the track (thresholds configurable).

Models (`--set model=`): `traces` (default) reads both raw channels, any length, through
masked 1-D convolutions and a bidirectional GRU; `features` is the study's dense net on
11 clathrin features. Both standardise their inputs inside the model with the training
split's statistics from dataset.json. The split is 60/20/20, stratified by label and
seeded (`--set group_split=true` keeps whole cells out instead). Positive and negative
tracks weigh the same in the loss (`class_weighting=balanced`), so probabilities are on
a balanced scale, and 0.5 is the balanced decision threshold.

After training, the validation split's probabilities are kept (calibration.json, and in
the export) to set the triage threshold that keeps a chosen recall; `predict` writes
triage.csv ranked by probability with a `review` flag, a per-cell summary, and a PNG of
example traces from the top, the borderline and the bottom of the list.

Modules: config, data (readers, labels, features, TF preprocessing and batching),
metrics (and the validation probabilities kept by `calibrate`), serving, outputs (the
triage list of predict).
"""

from biomodels import config as config_lib
from biomodels.errors import ConfigError
from biomodels.tasks.base import Option, Task
from biomodels.tasks.ccp import config as config_module
from biomodels.tasks.ccp import data, inference, outputs, serving
from biomodels.tasks.ccp import metrics as scores
from biomodels.tasks.ccp.config import MODELS, CCPConfig


class CCPTask(Task):
    name = "ccp"
    summary = "clathrin-coated-pit classification from clathrin and auxilin traces, with a triage list"
    Config = CCPConfig
    checkpoint_monitor = ("val_pr_auc", "max")
    default_split = (0.6, 0.2, 0.2)
    data_fields = ("aux_pval_cutoff", "aux_consecutive", "aux_short_track_frames", "frame_interval_s",
                   "group_split", "synthetic_cells", "synthetic_tracks_per_cell")
    # requests are small; pad tracks of different lengths into one batch
    serving_batching = {"max_batch_size": 256, "batch_timeout_micros": 1000, "max_enqueued_batches": 64,
                        "num_batch_threads": 2, "pad_variable_length_inputs": True}
    model_class = inference.CCPModel
    calibration_fields = {"validation_positive_probabilities": list, "validation_negative_probabilities": list}
    predict_options = (
        Option("target_recall", "float", None, "Flag for review the tracks above the threshold that keeps this recall "
                                               "on the validation split (default: the run's target_recall).",
               lower_bound=0.0, upper_bound=1.0),
        Option("threshold", "float", None, "Flag the tracks with a probability at or above this instead.",
               lower_bound=0.0, upper_bound=1.0),
    )

    @classmethod
    def presets(cls):
        return config_module.presets()

    # -- raw data -------------------------------------------------------------
    def find_sources(self, input_path, config):
        return data.find_sources(input_path)

    def read_source(self, source, config):
        return data.read_source(source, config)

    def write_synthetic(self, directory, num_examples, seed, config):
        from biomodels.pipelines.synthetic import ccp as synthetic

        synthetic.write_dataset(directory, num_examples, seed, config.synthetic_tracks_per_cell)

    def default_synthetic_examples(self, config):
        return config.synthetic_cells

    def split_by_example(self, config):
        return not config.group_split

    def stratum(self, example):
        return int(example["label"])

    def statistics(self, examples):
        return data.statistics(examples)

    # -- model ----------------------------------------------------------------
    def build_model(self, config, manifest):
        from biomodels.models import TraceFeatureNet, TraceNet

        config_lib.check_choice("model", config.model, MODELS)
        stats = manifest["statistics"]
        if config.model == "features":
            return TraceFeatureNet(stats["feature_mean"], stats["feature_variance"], config.hidden_units, config.activation)
        if stats["tracks_without_traces"]:
            raise ConfigError(f"{stats['tracks_without_traces']} training tracks have features but no traces; "
                              "train the features model (--set model=features) or give trace columns")
        data.check_channels(config, manifest)
        chosen = data.channel_indices(config)
        return TraceNet([stats["channel_mean"][i] for i in chosen], [stats["channel_variance"][i] for i in chosen],
                        filters=config.filters, kernel_size=config.kernel_size, conv_layers=config.conv_layers,
                        gru_units=config.gru_units, dense_units=config.dense_units, dropout=config.dropout)

    def class_weights(self, config, manifest):
        """(positive, negative) loss weights: balanced makes both classes weigh the same."""
        config_lib.check_choice("class_weighting", config.class_weighting, ("balanced", "none"))
        fraction = manifest["statistics"]["positive_fraction"]
        if config.class_weighting == "none" or fraction in (0.0, 1.0):
            return 1.0, 1.0
        return 0.5 / fraction, 0.5 / (1.0 - fraction)

    def compile_arguments(self, config, manifest, steps_per_epoch):
        import keras

        from biomodels.models import BalancedBinaryCrossentropy
        from biomodels.models.schedules import cosine_decay

        learning_rate = config.learning_rate
        if config.lr_schedule == "cosine":
            learning_rate = cosine_decay(config.learning_rate, config.epochs, steps_per_epoch)
        positive_weight, negative_weight = self.class_weights(config, manifest)
        return {
            "loss": BalancedBinaryCrossentropy(positive_weight, negative_weight),
            "optimizer": keras.optimizers.Adam(learning_rate),
            "metrics": [keras.metrics.AUC(name="auc"), keras.metrics.AUC(curve="PR", name="pr_auc")],
        }

    def preprocess(self, inputs, config=None):
        """Cast to float32 and set non-finite values (NaN padding) to zero; the models
        standardise their inputs themselves with the training statistics."""
        return data.preprocess(inputs)

    def augment(self, example, seed, config):
        return data.augment(example, seed, config)

    def model_io(self, example, config):
        return data.model_io(example, config)

    def batch(self, dataset, batch_size, training):
        return data.batch(dataset, batch_size, training)

    # -- results --------------------------------------------------------------
    def calibrate(self, model, dataset, manifest, config):
        """{"validation_positive_probabilities", "validation_negative_probabilities"}:
        the validation split's probabilities, from which predict and evaluate set the
        review threshold of any target recall."""
        return scores.calibrate(model, dataset)

    def evaluate(self, model, dataset, manifest, config, calibration=None, split="test"):
        return scores.evaluate(model, dataset, config, calibration or {}, manifest["statistics"]["positive_fraction"])

    def metrics_table(self, metrics):
        return scores.metrics_table(metrics)

    def serving_functions(self, model, config, calibration=None):
        return serving.serving_functions(model, config)

    def warmup_inputs(self, config):
        return serving.warmup_inputs(config)

    def bioimageio_description(self, config, pixel_size=None):
        return serving.bioimageio_description(config, pixel_size)

    def predict_files(self, predictor, input_path, output_dir, options):
        return outputs.write_triage(predictor, config_lib.model_config(self, predictor), input_path, output_dir, options)


TASK = CCPTask()
