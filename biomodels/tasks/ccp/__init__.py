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
inference (probabilities, the review threshold; `CCPModel`), metrics (and the
validation probabilities kept by `calibrate`), serving, outputs (the triage list of
predict).
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
    evaluation_examples = 4096
    statistics_fields = {"positive_fraction": (int, float), "tracks_without_traces": int, "feature_mean": list,
                         "feature_variance": list, "channel_mean": list, "channel_variance": list}
    predict_options = (
        Option("target_recall", "float", None, "Flag for review the tracks above the threshold that keeps this recall "
                                               "on the validation split (default: the run's target_recall).",
               lower_bound=0.0, upper_bound=1.0),
        Option("threshold", "float", None, "Flag the tracks with a probability at or above this instead.",
               lower_bound=0.0, upper_bound=1.0),
    )

    data, serving = data, serving
    # the modules' functions this task is made of, where they need nothing of the task
    presets = staticmethod(config_module.presets)
    find_sources = staticmethod(data.find_sources)
    statistics_sums = staticmethod(data.statistics_sums)
    statistics_from_sums = staticmethod(data.statistics_from_sums)
    preprocess = staticmethod(data.preprocess)
    batch = staticmethod(data.batch)
    metrics_table = staticmethod(scores.metrics_table)
    calibrate = staticmethod(scores.calibrate)

    # -- raw data -------------------------------------------------------------
    def write_synthetic(self, directory, num_examples, seed):
        from biomodels.pipelines.synthetic import ccp as synthetic

        synthetic.write_dataset(directory, num_examples, seed, self.config.synthetic_tracks_per_cell)

    def default_synthetic_examples(self):
        return self.config.synthetic_cells

    def split_by_example(self):
        return not self.config.group_split

    def stratum(self, example):
        return int(example["label"])

    # -- model ----------------------------------------------------------------
    def build_model(self):
        from biomodels.models import TraceFeatureNet, TraceNet

        config = self.config
        config_lib.check_choice("model", config.model, MODELS)
        stats = self.manifest.statistics
        if config.model == "features":
            return TraceFeatureNet(stats["feature_mean"], stats["feature_variance"], config.hidden_units, config.activation)
        if stats["tracks_without_traces"]:
            raise ConfigError(f"{stats['tracks_without_traces']} training tracks have features but no traces; "
                              "train the features model (--set model=features) or give trace columns")
        data.check_channels(config, self.manifest)
        chosen = data.channel_indices(config)
        return TraceNet([stats["channel_mean"][i] for i in chosen], [stats["channel_variance"][i] for i in chosen],
                        filters=config.filters, kernel_size=config.kernel_size, conv_layers=config.conv_layers,
                        gru_units=config.gru_units, dense_units=config.dense_units, dropout=config.dropout)

    def class_weights(self):
        """(positive, negative) loss weights: balanced makes both classes weigh the same."""
        config = self.config
        config_lib.check_choice("class_weighting", config.class_weighting, ("balanced", "none"))
        fraction = self.manifest.statistics["positive_fraction"]
        if config.class_weighting == "none" or fraction in (0.0, 1.0):
            return 1.0, 1.0
        return 0.5 / fraction, 0.5 / (1.0 - fraction)

    def compile_arguments(self, steps_per_epoch):
        import keras

        from biomodels.models import BalancedBinaryCrossentropy
        from biomodels.models.schedules import cosine_decay

        config = self.config
        learning_rate = config.learning_rate
        if config.lr_schedule == "cosine":
            learning_rate = cosine_decay(config.learning_rate, config.epochs, steps_per_epoch)
        positive_weight, negative_weight = self.class_weights()
        return {
            "loss": BalancedBinaryCrossentropy(positive_weight, negative_weight),
            "optimizer": keras.optimizers.Adam(learning_rate),
            "metrics": [keras.metrics.AUC(name="auc"), keras.metrics.AUC(curve="PR", name="pr_auc")],
        }

    def training_arrays(self, examples):
        return data.training_arrays(examples, self.config)

    def epoch_batches(self, arrays, seed, batch_size):
        return data.epoch_batches(arrays, seed, batch_size, self.config)

    # -- results --------------------------------------------------------------
    def evaluation_part(self, model, dataset, split, portion):
        return scores.evaluation_part(model, dataset)

    def metrics_from_parts(self, parts, split):
        return scores.metrics_from_parts(parts, self.config, self.calibration,
                                         self.manifest.statistics["positive_fraction"])

    def predict_files(self, predictor, input_path, output_dir, options):
        return outputs.write_triage(predictor, config_lib.model_config(self, predictor), input_path, output_dir, options)


TASK = CCPTask()
