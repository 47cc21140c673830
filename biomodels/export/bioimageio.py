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
from biomodels.errors import InputError

FORMAT_VERSION = "0.5.4"
DEFAULT_ABSOLUTE_TOLERANCE = 1e-3
DEFAULT_RELATIVE_TOLERANCE = 1e-3
PROJECT_AUTHORS = [{"name": "biomodels contributors"}]


def write_package(task, saved_model_dir, config, zip_path, pixel_size=None, license_id="CC-BY-4.0"):
    """Write `zip_path` (…/<version>.bioimageio.zip) for the SavedModel in `saved_model_dir`:
    the package holds a SavedModel of its own whose `serving_default` answers the ONE
    output its rdf describes (`Task.bioimageio_output`), since bioimageio.core's
    TensorFlow adapter matches a signature's outputs to the rdf by position, in an order
    that changes with the process's hash seed."""
    import tensorflow as tf

    task = task.bind(config)
    description = task.bioimageio_description(pixel_size)
    [input_tensor], [output_tensor] = description["inputs"], description["outputs"]
    input_name, test_input = task.bioimageio_test_input()
    with tempfile.TemporaryDirectory() as staging:
        packaged = os.path.join(staging, "saved_model")
        _save_one_output_model(task, saved_model_dir, packaged, output_tensor["id"])
        output = tf.saved_model.load(packaged).signatures["serving_default"](**{input_name: tf.constant(test_input)})
        output = task.bioimageio_postprocessing(output[output_tensor["id"]].numpy())
        if not np.any(output):
            raise InputError(saved_model_dir, "answers only zeros for the bioimage.io package's test input (cellular: "
                                              "no cell in a synthetic image at the network's diameter), a test output "
                                              "bioimage.io's validator refuses: train the model further")
        input_tensor["test_tensor"] = {"source": _save(staging, f"test_input_{input_tensor['id']}.npy", test_input)}
        output_tensor["test_tensor"] = {"source": _save(staging, f"test_output_{output_tensor['id']}.npy", output)}
        weights = shutil.make_archive(packaged, "zip", packaged)
        shutil.rmtree(packaged)
        with open(os.path.join(staging, "README.md"), "w") as handle:
            handle.write(_documentation(task, description))
        rdf = {
            "format_version": FORMAT_VERSION,
            "type": "model",
            "authors": PROJECT_AUTHORS,
            "license": license_id,
            "documentation": "README.md",
            **description,
            "config": {"bioimageio": {"reproducibility_tolerance": reproducibility_tolerances({output_tensor["id"]: output})}},
            "weights": {"tensorflow_saved_model_bundle": {"source": os.path.basename(weights), "tensorflow_version": tf.__version__}},
        }
        with open(os.path.join(staging, "rdf.yaml"), "w") as handle:
            json.dump(rdf, handle, indent=2)
        with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(os.listdir(staging)):
                archive.write(os.path.join(staging, name), name)
    return zip_path


def _save_one_output_model(task, saved_model_dir, path, output_id):
    """A SavedModel at `path` whose serving_default takes the export's one input and
    answers {output_id: task.bioimageio_output(the export's outputs)}."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)
    serve = loaded.signatures["serving_default"]
    [(input_name, spec)] = serve.structured_input_signature[1].items()

    @tf.function(input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name=input_name)])
    def packaged(x):
        return {output_id: task.bioimageio_output(serve(**{input_name: x}))}

    module = tf.Module()
    module.exported = loaded
    tf.saved_model.save(module, path, signatures={"serving_default": packaged.get_concrete_function()})


def space_axes(unit, pixel_size=None, minimum=None, step=None, like=None, ids=("y", "x")):
    """The space axes `ids` of an rdf tensor, in `unit` scaled by `pixel_size` (1 when
    unknown): of any size from `minimum` in steps of `step`, or, for an output, the size
    of the input tensor `like`."""

    def axis(axis_id):
        size = {"tensor_id": like, "axis_id": axis_id} if like else {"min": minimum, "step": step}
        return {"type": "space", "id": axis_id, "size": size, "unit": unit, "scale": float(pixel_size or 1.0)}

    return [axis(axis_id) for axis_id in ids]


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
