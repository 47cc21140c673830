"""The task registry: the command lines look tasks up here by name and never branch
on a task's name themselves."""

import importlib

from biomodels.errors import ConfigError

_MODULES = {
    "ccp": "biomodels.tasks.ccp",
    "cellular": "biomodels.tasks.cellular",
    "cryoet": "biomodels.tasks.cryoet",
    "deepis": "biomodels.tasks.deepis",
    "lch": "biomodels.tasks.lch",
}


def names():
    return sorted(_MODULES)


def get(name):
    """The Task instance registered as `name`."""
    if name not in _MODULES:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(names())}")
    return importlib.import_module(_MODULES[name]).TASK
