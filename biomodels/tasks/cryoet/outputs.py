"""What cryoet writes for people: label MRCs (and per-class probability MRCs) of every
tomogram given to predict, with the input's voxel size and origin, streamed slice by
slice through `inference`; and the images shown in TensorBoard (input, ground truth and
prediction in class colours)."""

import os

import numpy as np

from biomodels.tasks.cryoet import inference
from biomodels.tasks.cryoet.config import CLASS_NAMES, FEATURE_CLASSES, NUM_CLASSES
from biomodels.tasks.cryoet.data import open_slices, predict_inputs, split_name, standardise

LABEL_COLOURS = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]], np.uint8
)


def predict_tomograms(predictor, input_path, output_dir, options):
    """Label every tomogram under `input_path` (MRC or OME-Zarr), one at a time and slice
    by slice; write NAME_labels (8-bit) and, with options["probabilities"], NAME_<class>
    per feature class, in the input's format (.mrc, or an OME-Zarr .zarr of the input's
    OME-NGFF version) with its voxel size and origin, each slice as it is computed:
    memory holds a few slices (a row of chunks), not the tomogram nor its probabilities."""
    import contextlib

    from biomodels.report import progress_bar

    paths = predict_inputs(input_path)
    inference.require_standardised(predictor)
    written = []
    for path in paths:
        tomogram = open_slices(path)
        mean, std = inference.tomogram_statistics(tomogram, path)
        kinds = output_kinds(path, output_dir, options)
        bar = progress_bar(len(tomogram), f"{os.path.basename(path)} slices")
        with contextlib.ExitStack() as files:
            writers = [files.enter_context(slice_writer(tomogram)(out, tomogram.shape, dtype, tomogram))
                       for out, dtype in kinds.items()]
            predict_slices(predictor, tomogram, (mean, std), writers, range(len(tomogram)), options=options, bar=bar)
        written += list(kinds)
    return written


def output_kinds(path, output_dir, options):
    """{output path: dtype} of a tomogram: NAME_labels and, with options["probabilities"],
    NAME_<class> per feature class, in the input's format (.mrc or .zarr)."""
    name, suffix = split_name(path)
    stem = os.path.join(output_dir, name)
    # 8-bit labels (MRC mode 0): labels 0..5 read the same whether a tool takes them as signed or not
    kinds = {f"{stem}_labels{suffix}": np.int8}
    if options["probabilities"]:
        kinds.update({f"{stem}_{CLASS_NAMES[index]}{suffix}": np.float32 for index in FEATURE_CLASSES})
    return kinds


def slice_writer(tomogram):
    """The writer class of a tomogram's outputs, in its format: MrcSliceWriter, or a
    ZarrSliceWriter of its OME-NGFF version."""
    import functools

    from biomodels.pipelines.mrc_slices import MrcSliceWriter
    from biomodels.pipelines.ome_zarr import ZarrSlices, ZarrSliceWriter

    if isinstance(tomogram, ZarrSlices):
        return functools.partial(ZarrSliceWriter, version=tomogram.image.version)
    return MrcSliceWriter


def predict_slices(predictor, tomogram, moments, files, depths, *, options, bar=None):
    """Label the slices `depths` of `tomogram`, standardised with its (mean, deviation),
    into `files` (the labels', then each feature class's probabilities)."""
    for done, z in enumerate(depths, start=1):
        probabilities = inference.slice_probabilities(predictor, standardise(tomogram[z], *moments), options)
        files[0][z] = np.argmax(probabilities, axis=-1).astype(np.int8)
        for file, index in zip(files[1:], FEATURE_CLASSES):
            file[z] = probabilities[..., index]
        if bar:
            bar.update(done)


def summary_images(model, inputs, targets):
    from biomodels.ops.display import gray_rgb

    predictions = np.argmax(model(inputs, training=False), axis=-1)
    return {
        "input": gray_rgb(np.asarray(inputs)[..., 0]),
        "ground_truth": colour_labels(np.asarray(targets)),
        "prediction": colour_labels(predictions),
    }


def colour_labels(labels):
    """RGB uint8 images of class labels (ignored pixels white)."""
    labels = np.asarray(labels)
    colours = np.concatenate([LABEL_COLOURS, np.full((256 - NUM_CLASSES, 3), 255, np.uint8)])
    return colours[labels.astype(np.uint8)]
