"""What deepis writes for people: for every volume given to predict, `inference`'s signed
distance, the two cells' labels, the synapse (TIFF with the voxel size) and a report of
volumes and synapse size; and the images shown in TensorBoard."""

import os

import numpy as np

from biomodels.config import write_json_atomic
from biomodels.pipelines import readers
from biomodels.tasks.deepis import inference
from biomodels.tasks.deepis.data import predict_inputs, read_volume


def predict_volumes(predictor, config, input_path, output_dir, options):
    """NAME_distance.tif, NAME_labels.tif, NAME_synapse.tif and NAME_report.json for
    every volume under `input_path`, by `predictor` of a run trained with `config`."""
    from biomodels.report import progress_bar

    paths = predict_inputs(input_path)
    written = []
    bar = progress_bar(len(paths), "volumes")
    for done, path in enumerate(paths, start=1):
        volume, voxel_size = read_volume(path)
        result = inference.analyse_volume(predictor, config, volume, options, voxel_size)
        stem = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
        written += write_analysis(stem, path, result, options["voxel_size"] or voxel_size)
        bar.update(done)
    return written


def write_analysis(stem, path, result, voxel_size):
    """STEM_distance.tif, STEM_labels.tif, STEM_synapse.tif (with the voxel size) and
    STEM_report.json of the `SynapseAnalysis` of the volume read from `path`."""
    readers.write_tiff_volume(f"{stem}_distance.tif", result.distance, voxel_size)
    readers.write_tiff_volume(f"{stem}_labels.tif", result.labels, voxel_size)
    readers.write_tiff_volume(f"{stem}_synapse.tif", result.synapse.astype(np.uint8), voxel_size)
    write_json_atomic(f"{stem}_report.json", {"file": os.path.abspath(path), **result.report})
    return [f"{stem}_{kind}" for kind in ("distance.tif", "labels.tif", "synapse.tif", "report.json")]


def summary_images(model, inputs, targets):
    """The middle slice of input, true and predicted distance."""
    from biomodels.ops.display import gray_rgb

    predicted = np.asarray(model(inputs, training=False))[..., 0]
    middle = inputs.shape[1] // 2
    scale = max(1.0, float(np.abs(np.asarray(targets)).max()))
    return {"input": gray_rgb(np.asarray(inputs)[:, middle, :, :, 0]),
            "ground_truth": colour_distance(np.asarray(targets)[:, middle, :, :, 0], scale),
            "prediction": colour_distance(predicted[:, middle], scale)}


def colour_distance(distance, clip):
    """RGB: CAR-T (positive) in red, target (negative) in blue, brighter further inside."""
    scaled = np.clip(np.asarray(distance) / clip, -1, 1)
    rgb = np.zeros(scaled.shape + (3,), np.uint8)
    rgb[..., 0] = (np.maximum(scaled, 0) * 255).astype(np.uint8)
    rgb[..., 2] = (np.maximum(-scaled, 0) * 255).astype(np.uint8)
    return rgb
