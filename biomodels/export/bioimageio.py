"""bioimage.io model packages (rdf.yaml format 0.5) from exported SavedModels, for
Fiji/deepImageJ, ilastik and napari users of the bioimage.io model zoo.

The package holds rdf.yaml (written as JSON, which is valid YAML), the SavedModel
zipped as `tensorflow_saved_model_bundle` weights, test input and output tensors as
.npy (computed by the SavedModel itself) and a README.md; it is written under a
temporary name and renamed when whole.
"""

import json
import os
import shutil
import tempfile
import zipfile

import numpy as np

from biomodels.atomic import atomic_path

FORMAT_VERSION = "0.5.4"
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
            "weights": {"tensorflow_saved_model_bundle": {"source": os.path.basename(weights), "tensorflow_version": tf.__version__}},
        }
        with open(os.path.join(staging, "rdf.yaml"), "w") as handle:
            json.dump(rdf, handle, indent=2)
        with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(os.listdir(staging)):
                archive.write(os.path.join(staging, name), name)
    return zip_path


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
