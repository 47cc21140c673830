"""deepis: label-free 3-D segmentation of a CAR-T cell and its target cell in
refractive-index (RI) tomograms, and the immunological synapse between them (DeepIS).

The seed's README speaks of Keras and a sigmoid mask; the study's code is PyTorch and
its network predicts a signed distance map. We follow the study: positive inside the
CAR-T cell, negative inside the target cell, zero in the medium, in voxels.

Raw data: the study's `.mat` files (`input`, the RI tomogram, and `target`, the signed
distance; MATLAB v5 through scipy, v7.3 through h5py; MATLAB's rows × columns × slices
become Z × Y × X), or TIFF stacks `NAME.tif` (RI, Z×Y×X) with `NAME_labels.tif`
(0 medium, 1 CAR-T, 2 target), whose signed distance is computed at prepare time.
Volumes are cut into (or padded to) training crops; RI is normalised around the
medium's index inside the graph: (RI − medium_index) / ri_scale.

Prediction runs a volume whole up to 6 million voxels and larger ones in a few large
3-D tiles with blended overlaps; the distance is
thresholded at half a voxel into the two cells, the synapse is where both masks dilated
by 2 voxels overlap, and a report gives cell volumes and synapse size, in µm³ and µm²
when the voxel size is known (TIFF metadata or --voxel_size).

Modules: config, data (readers, TF preprocessing, augmentation, loss weights), inference
(a volume to its distance, cells, synapse and report; `DeepISModel`), metrics, serving,
outputs (files of predict, TensorBoard images).
"""

from biomodels.errors import ConfigError
from biomodels.tasks.base import Option, Task
from biomodels.tasks.deepis import config as config_module
from biomodels import config as config_lib
from biomodels.tasks.deepis import data, inference, outputs, serving
from biomodels.tasks.deepis import metrics as scores
from biomodels.tasks.deepis.config import DeepISConfig


class DeepISTask(Task):
    name = "deepis"
    summary = "3-D ResNet-GCN U-Net: CAR-T and target cells in refractive-index tomograms, and their synapse"
    Config = DeepISConfig
    data_fields = ("crop", "distance_clip", "synthetic_volumes", "synthetic_shape")
    evaluation_examples = 64
    model_class = inference.DeepISModel
    serving_batching = {"max_batch_size": 2, "batch_timeout_micros": 2000, "max_enqueued_batches": 16, "num_batch_threads": 2}
    predict_options = (
        Option("voxel_size", "string", None, "Voxel size x,y,z in µm (or one number) when the files do not say; puts "
                                             "the report in µm³ and µm².", parse=inference.parse_voxel_size),
        Option("tile", "string", None, "Tile z,y,x in voxels, blended with a quarter overlap (default: the whole "
                                       "volume up to 6 million voxels, else the fewest even tiles of at most that "
                                       "many, overlapping by 32 voxels).",
               parse=inference.parse_tile),
    )

    data, serving = data, serving
    # the modules' functions this task is made of, where they need nothing of the task
    presets = staticmethod(config_module.presets)
    find_sources = staticmethod(data.find_sources)
    predict_inputs = staticmethod(data.predict_inputs)
    metrics_table = staticmethod(scores.metrics_table)
    summary_images = staticmethod(outputs.summary_images)
    bioimageio_output = staticmethod(serving.bioimageio_output)

    # -- raw data -------------------------------------------------------------
    def write_synthetic(self, directory, num_examples, seed):
        from biomodels.pipelines.synthetic import deepis as synthetic

        synthetic.write_dataset(directory, num_examples, seed, tuple(self.config.synthetic_shape))

    def default_synthetic_examples(self):
        return self.config.synthetic_volumes

    # -- model ----------------------------------------------------------------
    def build_model(self):
        from biomodels.models import DeepISNet

        config = self.config
        if any(n % DeepISNet.size_multiple for n in config.crop):
            raise ConfigError(f"--set crop={','.join(map(str, config.crop))}: every size must be a multiple of "
                              f"{DeepISNet.size_multiple}")
        return DeepISNet(widths=config.widths, gcn_kernels=config.gcn_kernels)

    def compile_arguments(self, steps_per_epoch):
        import keras

        from biomodels.models.schedules import cosine_decay

        config = self.config
        if config.loss not in ("l1", "l2"):
            raise ConfigError(f"--set loss={config.loss}: choose l1 (the paper) or l2 (the study's code)")
        if config.lr_schedule not in ("cosine", "halving"):
            raise ConfigError(f"--set lr_schedule={config.lr_schedule}: choose cosine or halving (the study's)")
        if config.lr_schedule == "halving":
            schedule = keras.optimizers.schedules.ExponentialDecay(
                config.learning_rate, decay_steps=max(1, config.halve_every_epochs * steps_per_epoch), decay_rate=0.5,
                staircase=True)
        else:
            schedule = cosine_decay(config.learning_rate, config.epochs, steps_per_epoch)
        loss = keras.losses.MeanAbsoluteError() if config.loss == "l1" else keras.losses.MeanSquaredError()
        optimizer = keras.optimizers.Adam(schedule, beta_1=config.beta_1, beta_2=config.beta_2,
                                          global_clipnorm=config.clip_norm or None)
        return {"loss": loss, "optimizer": optimizer}

    def preprocess(self, inputs):
        """Refractive index to network input: (RI - medium_index) / ri_scale with the run's
        settings (1.337 and 0.01 by default); non-finite voxels become the medium."""
        return data.preprocess(inputs, self.config)

    # -- results --------------------------------------------------------------
    def evaluation_units(self, split):
        if scores.scored_by_volume(self.manifest, split):
            return scores.volume_units(self.manifest, split, tuple(self.config.crop))
        return super().evaluation_units(split)

    def evaluation_part(self, model, dataset, split, portion):
        return scores.evaluation_part(model, dataset, self.manifest, self.config, split, portion)

    def metrics_from_parts(self, parts, split):
        return scores.metrics_from_parts(parts, self.manifest, split)

    def early_stopping_patience(self):
        return self.config.early_stopping_patience

    def bioimageio_test_input(self):
        return serving.bioimageio_test_input(self.config)

    def predict_files(self, predictor, input_path, output_dir, options):
        return outputs.predict_volumes(predictor, config_lib.model_config(self, predictor), input_path, output_dir, options)


TASK = DeepISTask()
