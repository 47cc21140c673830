"""bioimage.io model packages (rdf.yaml format 0.5) from exported SavedModels, for
Fiji/deepImageJ, ilastik and napari users of the bioimage.io model zoo.

The package holds rdf.yaml (written as JSON, which is valid YAML), the SavedModel
zipped as `tensorflow_saved_model_bundle` weights, test input and output tensors as
.npy (computed by the SavedModel itself) and a README.md; it is written under a
temporary name and renamed when whole.

Reproducibility tolerances are stated per output, fitted to its test tensor: the spec
(bioimageio.spec 0.5.14) refuses an absolute tolerance above 1 % of a test tensor's
maximum, so its default 1e-3 fails for small outputs and every tolerance fails for an
output whose values are all negative (an untrained network's cell-probability logits).
"""

import json
import os
import shutil
import tempfile
import zipfile

import numpy as np

from biomodels.atomic import atomic_path

FORMAT_VERSION = "0.5.4"
DEFAULT_ABSOLUTE_TOLERANCE = 1e-3
DEFAULT_RELATIVE_TOLERANCE = 1e-3
PROJECT_AUTHORS = [{"name": "biomodels contributors"}]


def write_package(task, saved_model_dir, config, zip_path, pixel_size=None, license_id="CC-BY-4.0"):
    """Write `zip_path` (…/<version>.bioimageio.zip) for the SavedModel in `saved_model_dir`."""
    import tensorflow as tf

    description = task.bioimageio_description(config, pixel_size)
    signature, inputs = task.warmup_inputs(config)[0]
    inputs = {name: value[:1] for name, value in inputs.items()}
    loaded = tf.saved_model.load(saved_model_dir)
    outputs = {name: value.numpy() for name, value in loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()}).items()}
    with tempfile.TemporaryDirectory() as staging:
        for tensor in description["inputs"]:
            tensor["test_tensor"] = {"source": _save(staging, f"test_input_{tensor['id']}.npy", inputs[tensor["id"]])}
        for tensor in description["outputs"]:
            tensor["test_tensor"] = {"source": _save(staging, f"test_output_{tensor['id']}.npy", outputs[tensor["id"]])}
        weights = shutil.make_archive(os.path.join(staging, "saved_model"), "zip", saved_model_dir)
        with open(os.path.join(staging, "README.md"), "w") as handle:
            handle.write(_documentation(task, description))
        rdf = {
            "format_version": FORMAT_VERSION,
            "type": "model",
            "authors": PROJECT_AUTHORS,
            "license": license_id,
            "documentation": "README.md",
            **description,
            "config": {"bioimageio": {"reproducibility_tolerance": reproducibility_tolerances(outputs)}},
            "weights": {"tensorflow_saved_model_bundle": {"source": os.path.basename(weights), "tensorflow_version": tf.__version__}},
        }
        with open(os.path.join(staging, "rdf.yaml"), "w") as handle:
            json.dump(rdf, handle, indent=2)
        with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(os.listdir(staging)):
                archive.write(os.path.join(staging, name), name)
    return zip_path


def space_axes(unit, pixel_size=None, minimum=None, step=None, like=None):
    """The y and x space axes of an rdf tensor, in `unit` scaled by `pixel_size` (1 when
    unknown): of any size from `minimum` in steps of `step`, or, for an output, the size
    of the input tensor `like`."""

    def axis(axis_id):
        size = {"tensor_id": like, "axis_id": axis_id} if like else {"min": minimum, "step": step}
        return {"type": "space", "id": axis_id, "size": size, "unit": unit, "scale": float(pixel_size or 1.0)}

    return [axis("y"), axis("x")]


def reproducibility_tolerances(outputs):
    """rdf `config.bioimageio.reproducibility_tolerance` entries for `outputs` (name ->
    test tensor): integer outputs must match exactly; a float output gets the default
    absolute tolerance, lowered to 1 % of its test tensor's maximum where that is smaller.
    A float output whose maximum is not positive gets no entry, so a consumer applies its
    default tolerance: the validator would refuse any absolute tolerance for it."""
    entries = []
    for name in sorted(outputs):
        array = np.asarray(outputs[name])
        if not np.issubdtype(array.dtype, np.floating):
            entries.append({"output_ids": [name], "absolute_tolerance": 0, "relative_tolerance": 0})
            continue
        peak = float(array.max()) if array.size else 0.0
        if peak > 0:
            absolute = DEFAULT_ABSOLUTE_TOLERANCE if DEFAULT_ABSOLUTE_TOLERANCE < 0.01 * peak else one_percent_below(peak)
            entries.append({"output_ids": [name], "absolute_tolerance": absolute, "relative_tolerance": DEFAULT_RELATIVE_TOLERANCE})
    return entries


def one_percent_below(peak):
    """1 % of `peak`, one float32 step under it: the validator computes its bound in
    float32 (a float32 test tensor's maximum times 0.01), which can round below the
    float64 product and refuse a tolerance of exactly 1 %."""
    bound = np.float32(peak) * np.float32(0.01)
    return float(np.nextafter(bound, np.float32(0)))


def _save(directory, name, array):
    np.save(os.path.join(directory, name), np.asarray(array), allow_pickle=False)
    return name


def _documentation(task, description):
    return (
        f"# {description['name']}\n\n{description['description']}\n\n"
        f"Made with biomodels (`python -m biomodels.export --task={task.name} --bioimageio`). "
        "Preprocessing is part of the SavedModel graph as well as listed in rdf.yaml.\n\n"
        "# Validation\n\nThe test tensors in this package were computed by the packaged SavedModel. "
        "The model's metrics on its test split are in the export.json of the SavedModel.\n"
    )
