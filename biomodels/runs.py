"""A training run's directory as the other commands read it: its resolved
configuration (config.json, checked against the task) and its trained model
(best.keras, else last.keras)."""

import os

from biomodels import config as config_lib
from biomodels.errors import InputError


def run_config(task, model_dir):
    """The resolved Config stored in a run's config.json, checked against `task`."""
    record = config_lib.read_run_config(model_dir)
    if record.get("task") != task.name:
        raise InputError(os.path.join(model_dir, config_lib.CONFIG_FILE), f"is a run of task {record.get('task')!r}, not {task.name!r}")
    return config_lib.from_dict(task, record["config"])


def load_trained_model(model_dir):
    """best.keras of a run, else last.keras."""
    import keras

    import biomodels.models  # noqa: F401  registers the custom classes for deserialisation

    for name in ("best.keras", "last.keras"):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            try:
                return keras.saving.load_model(path, safe_mode=True)
            except Exception as error:  # a damaged or foreign file
                raise InputError(path, f"cannot load the model ({str(error).splitlines()[0]})") from None
    raise InputError(model_dir, "holds no trained model (best.keras or last.keras): has training finished an epoch?")
