"""cellular: Cellpose's flow network for cell instance segmentation (CELLULAR data set).

Raw data: the CELLULAR layout (`images/` and `masks/<image>/<class>/*.png`) or a
Cellpose training folder (`NAME.tif` beside `NAME_masks.tif`); see `data`.
Each image becomes one example: the image normalised per channel to its 1st-99th
percentiles (`preprocess`, TensorFlow, also inside the serving graph), the instance
labels, their Cellpose flows, the cells' mean diameter and each object's class.

Training crops are rotated, flipped, scaled to the network's mean diameter (30 pixels)
times 0.75-1.25, and cropped, with the flows carried along (`augment2d`). The network
(`CellposeNet`) predicts 5 × the flows and a cell-probability logit; masks come from
following the flows (`biomodels.ops.flows.masks_from_flows`). Evaluation reports
Cellpose's average precision at IoU 0.5, 0.75 and 0.9 and the CELLULAR paper's
foreground-pixel precision, recall, F1 and Jaccard, per class where the data has classes.

Modules: config (Config, presets, checks), data (readers, examples, TF preprocessing and
augmentation), inference (an image to its masks, as Cellpose's eval; `CellularModel`),
image_maps (the network over one image; `Segmentation`), stacks (Z-stacks in 3-D or
stitched), sizes (size estimation), pretrained (Cellpose's models by name), blocks (one
large image in blocks),
checkpoints (Cellpose checkpoints for --init_from), metrics, serving, outputs (files of
predict, TensorBoard images).
"""

import os

import numpy as np

from biomodels import config as config_lib
from biomodels.tasks.base import Option, Task, tiling_options
from biomodels.tasks.cellular import checkpoints, data, inference, outputs, pretrained, serving
from biomodels.tasks.cellular import config as config_module
from biomodels.tasks.cellular import metrics as scores
from biomodels.tasks.cellular.config import CellularConfig

#: masks_from_flows' thresholds: options of predict and of evaluate (where each overrides
#: the configuration field of its name)
MASK_OPTIONS = (
    Option("flow_threshold", "float", None, "Drop masks whose flow error exceeds this (default: the run's, "
                                            f"{CellularConfig.flow_threshold:g}).", lower_bound=0.0),
    Option("cellprob_threshold", "float", None, "Pixels with a cell-probability logit above this are followed "
                                                f"(default: the run's, {CellularConfig.cellprob_threshold:g})."),
    Option("min_size", "integer", None, "Drop masks smaller than this many pixels (default: the run's, "
                                        f"{CellularConfig.min_size}).", lower_bound=0),
)


class CellularTask(Task):
    name = "cellular"
    summary = "Cellpose-style flow network for cell instance segmentation (CELLULAR autophagy data)"
    Config = CellularConfig
    data_fields = ("channels", "gray", "skip_classes", "val_pattern", "test_pattern", "min_masks", "synthetic_images",
                   "synthetic_shape")
    model_class = inference.CellularModel
    calibration_fields = {"training_diameter": (int, float)}
    evaluation_examples = 8
    statistics_fields = {"mean_diameter": (int, float)}
    serving_batching = {"max_batch_size": 8, "batch_timeout_micros": 2000, "max_enqueued_batches": 32, "num_batch_threads": 2}
    predict_options = (
        Option("diameter", "float", None, "Mean cell diameter in pixels; images are rescaled so cells match the "
                                          "network's (default: the training cells' mean; 0: estimated for each image "
                                          "with the model's size model, as Cellpose's --diameter 0).",
               lower_bound=0.0, parse=inference.parse_diameter),
        Option("channels", "string", None, "Cytoplasm and nucleus channel indices from 0, such as 0,1 or 0 "
                                           "(default: the training channels)."),
        *MASK_OPTIONS,
        Option("masks_in", "string", None, "Where Cellpose's dynamics run: graph (the model's `masks` signature, "
                                           "whole images) or python (tiled network, numba); default: graph for "
                                           "a TF Serving address, so only masks travel, python otherwise.",
               parse=inference.parse_masks_in),
        *tiling_options("the fewest even tiles of about 2.3 million pixels, the whole image when it fits"),
        Option("do_3D", "bool", False, "Segment Z-stacks (TIFF ZYX or ZCYX, OME-Zarr) in 3-D as Cellpose's do_3D: the "
                                       "network on every YX, ZX and ZY slice, the flows combined and followed in 3-D."),
        Option("anisotropy", "float", None, "The Z spacing over the pixel size, for --do_3D (default: from the stack's "
                                            "ImageJ or OME-Zarr voxel size, else 1).", lower_bound=0.01),
        Option("stitch_threshold", "float", 0.0, "Segment each Z slice of a stack in 2-D and link masks of consecutive "
                                                 "slices whose IoU reaches this (Cellpose's stitch_threshold; 0: off).",
               lower_bound=0.0, upper_bound=1.0),
        Option("block", "integer", None, "Segment each image in blocks of this many pixels a side, each a task (on the "
                                         "workers with --scheduler), with a margin of twice the diameter, cells "
                                         "stitched across the seams; writes NAME_cp_masks.zarr (OME-Zarr).",
               lower_bound=64),
    )
    evaluate_options = MASK_OPTIONS
    one_pass_epochs = True  # Cellpose's train_seg: each image once an epoch, the last batch smaller

    data, serving = data, serving
    # the modules' functions this task is made of, where they need nothing of the task
    presets = staticmethod(config_module.presets)
    statistics_sums = staticmethod(data.statistics_sums)
    statistics_from_sums = staticmethod(data.statistics_from_sums)
    predict_inputs = staticmethod(data.predict_inputs)
    preprocess = staticmethod(data.preprocess)
    batch = staticmethod(data.batch)
    metrics_table = staticmethod(scores.metrics_rows)
    summary_images = staticmethod(outputs.summary_images)
    bioimageio_output = staticmethod(serving.bioimageio_output)

    # -- raw data -------------------------------------------------------------
    def assigned_split(self, source):
        return data.assigned_split(source, self.config)

    def write_synthetic(self, directory, num_examples, seed):
        from biomodels.pipelines.synthetic import cellular as synthetic

        synthetic.write_dataset(directory, num_examples, seed, tuple(self.config.synthetic_shape))

    def default_synthetic_examples(self):
        return self.config.synthetic_images

    # -- model ----------------------------------------------------------------
    def build_model(self):
        from biomodels.models import CellposeNet

        config = self.config
        data.check_training_images(self.manifest, config)
        return CellposeNet(nchan=len(config.channels), nbase=config.nbase, diam_mean=config.diameter_mean)

    def check_initial_weights(self, path):
        path = pretrained.checkpoint_path(path) if pretrained.is_named(path) else path
        super().check_initial_weights(path)
        if checkpoints.is_cellpose_checkpoint(path):
            checkpoints.fitting_state(path, self.config)

    def initial_model(self, path):
        """A Cellpose PyTorch checkpoint (not a run or .keras file), or a Cellpose model by
        name (cellpose:cyto3), as a Keras model, for --init_from."""
        path = pretrained.checkpoint_path(path) if pretrained.is_named(path) else path
        if not checkpoints.is_cellpose_checkpoint(path):
            return None
        return checkpoints.model_from_checkpoint(path, self.config)

    def named_model(self, source):
        """cellpose:NAME, or the path of a Cellpose CPnet checkpoint file (what Cellpose's
        --pretrained_model takes, such as a model trained in its GUI): the network
        converted, with its widths, channels and diameter and the paper preset's rest."""
        if pretrained.is_named(source):
            model = pretrained.converted_model(source)
        elif os.path.isfile(source) and checkpoints.is_cellpose_checkpoint(source):
            from biomodels.pipelines.torch_checkpoint import read_cellpose_net

            model = read_cellpose_net(source)
        else:
            return None
        return model, inference.cpnet_config(self, model)

    def compile_arguments(self, steps_per_epoch):
        import keras

        from biomodels.models import CellposeLoss
        from biomodels.models.cellpose import CellposeLearningRate, CoupledSGD

        config = self.config
        schedule = CellposeLearningRate(config.learning_rate, steps_per_epoch, config.epochs, config.warmup_epochs,
                                        config.final_halvings_epochs)
        if config.optimizer == "sgd":
            # PyTorch's SGD, as Cellpose trains: weight decay added to the gradient (L2)
            optimizer = CoupledSGD(schedule, momentum=0.9, l2=config.weight_decay)
        else:
            optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
        return {"loss": CellposeLoss(), "optimizer": optimizer}

    def bioimageio_test_input(self):
        return serving.bioimageio_test_input(self.config)

    def bioimageio_postprocessing(self, output):
        return serving.bioimageio_postprocessing(output, self.config)

    def keep_for_training(self, example):
        return data.keep_for_training(example, self.config)

    # -- results --------------------------------------------------------------
    def calibrate(self, model, dataset):
        """{"training_diameter", "size_model"}: the training cells' mean diameter, to which
        predict and evaluate rescale images when no --diameter is given, and a size model
        fitted on the training images as Cellpose fits one (sizes.fit_size_model), with
        which --diameter=0 estimates each image's."""
        from biomodels.pipelines import dataset as dataset_lib
        from biomodels.tasks.cellular import sizes

        if model is None:  # nothing to take styles from: the diameter alone
            return {"training_diameter": self.manifest.statistics["mean_diameter"]}
        network = self.serving_functions(model)["normalised"]
        examples = list(dataset_lib.examples(self.manifest, "train").as_numpy_iterator())
        style_of = lambda image: np.asarray(network(images=np.float32(image[np.newaxis]))["style"][0])  # noqa: E731
        size_model = sizes.fit_size_model(style_of, [example["image"] for example in examples],
                                          [float(example["diameter"]) for example in examples], self.config.diameter_mean)
        return {"training_diameter": self.manifest.statistics["mean_diameter"],
                **({"size_model": size_model} if size_model else {})}

    def evaluation_part(self, model, dataset, split, portion):
        return scores.evaluation_part(model, dataset, self.manifest, self.config, self.calibration)

    def metrics_from_parts(self, parts, split):
        return scores.metrics_from_parts(parts, self.manifest)

    def predicts_in_blocks(self, options):
        return options.get("block") is not None

    def predict_in_blocks(self, executor, model, input_path, output_dir, options):
        from biomodels.predictors import process_predictor
        from biomodels.tasks.cellular import blocks

        if options.get("do_3D") or options.get("stitch_threshold"):
            from biomodels.errors import ConfigError

            raise ConfigError("--block segments 2-D images: it does not take --do_3D or --stitch_threshold")
        predictor = process_predictor(self, model)
        settings = inference.resolve_settings(predictor, config_lib.model_config(self, predictor),
                                              {**options, "masks_in": options["masks_in"] or "python"})
        return [blocks.segment_in_blocks(executor, self.name, model, path, output_dir, settings=settings,
                                         block=options["block"])
                for path in data.predict_inputs(input_path)]

    def predict_files(self, predictor, input_path, output_dir, options):
        return outputs.predict_images(predictor, config_lib.model_config(self, predictor), input_path, output_dir, options)


TASK = CellularTask()
