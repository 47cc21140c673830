"""A training run's directory over its life: the lock that keeps one `train` per
directory, the epoch checkpoints a killed run resumes from (written only while the
weights are finite), the mark of a finished run, and the unfinished run that a rerun of
the same command continues.

An epoch checkpoint is a folder `backup/epoch-NNNN/` holding the model with its
optimizer's variables (`state.keras`, a hard link to the epoch's last.keras where the run
saved one; runs of earlier versions wrote the variables alone, `state.weights.h5`) and
the states of the model's random-number generators (`random.npz`, e.g. dropout's),
written under a temporary name and renamed in one step,
so its name is the only record of how many epochs it holds: a run killed at any moment
resumes from a complete checkpoint. The two newest are kept; how often one is written is
callbacks.EpochCheckpoints's choice.
"""

import glob
import json
import os
import re
import shutil

import numpy as np

from biomodels import config as config_lib
from biomodels.atomic import FolderLock
from biomodels.errors import InputError

FINISHED_FILE = "finished.json"
BACKUP_DIR = "backup"
_EPOCH_DIR = re.compile(r"^epoch-(\d{4,})$")
_KEPT = 2
STATE_FILE = "state.keras"


def lock_run(model_dir):
    """A FolderLock on the run directory, or an InputError when another process holds it."""
    lock, owner = FolderLock.acquire(model_dir)
    if lock is None:
        raise InputError(model_dir, f"another train command (process {owner}) is using this run directory")
    return lock


def is_finished(model_dir):
    return os.path.isfile(os.path.join(model_dir, FINISHED_FILE))


def mark_finished(model_dir, summary):
    config_lib.write_json_atomic(os.path.join(model_dir, FINISHED_FILE), summary)


def find_unfinished(runs_root, identity):
    """(directory, lock) of the newest unfinished run under `runs_root` whose
    config.json matches `identity` (task, preset, config, data set and seed) and that no
    other process holds; (None, None) when there is none."""
    for model_dir in sorted(glob.glob(os.path.join(runs_root, "*")), reverse=True):
        path = os.path.join(model_dir, config_lib.CONFIG_FILE)
        if not os.path.isfile(path) or is_finished(model_dir):
            continue
        try:
            record = config_lib.read_json(path)
        except InputError:
            continue
        if run_identity(record) != identity:
            continue
        lock, _ = FolderLock.acquire(model_dir)
        if lock is not None:
            return model_dir, lock
    return None, None


def run_identity(record):
    """What makes two runs the same run: the fields of config.json a rerun must match."""
    return json.loads(json.dumps({key: record.get(key) for key in ("task", "preset", "config", "data_dir", "seed")}))


# -- epoch checkpoints ---------------------------------------------------------
def weights_are_finite(model):
    return all(np.isfinite(value).all() for value in model.get_weights())


def save_model(model, path):
    """`model.save(path)` (a .keras file), without Keras 3's rebuilding of its attribute
    skip sets at every save: saving_lib.get_attr_skipset caches each set under
    `saving_attr_skipset_*` but looks it up under `saving_attr_skiplist_*`, so every save
    made ~180 throwaway layers (0.27 s of a 0.73 s cellular save, profiled). The sets are
    cached here under the name it reads; should Keras change, the save is just slower."""
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib

        for kind in ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss"):
            if global_state.get_global_attribute(f"saving_attr_skiplist_{kind}") is None:
                global_state.set_global_attribute(f"saving_attr_skiplist_{kind}", saving_lib.get_attr_skipset(kind))
    except (ImportError, AttributeError, ValueError):
        pass
    model.save(path)


def link_or_copy(source, target):
    """`target` as a hard link to `source` (no bytes written), or a copy where the file
    system has no hard links. Files linked so are only ever replaced whole, never changed."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def save_epoch(model, model_dir, epochs_done, saved_model=None):
    """Write backup/epoch-NNNN (complete or not at all) and drop all but the newest two.
    `saved_model`: a .keras file of `model` as it is now, linked instead of saved again."""
    backup = os.path.join(model_dir, BACKUP_DIR)
    final = os.path.join(backup, f"epoch-{epochs_done:04d}")
    staging = os.path.join(backup, f".epoch-{epochs_done:04d}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        if saved_model:
            link_or_copy(saved_model, os.path.join(staging, STATE_FILE))
        else:
            save_model(model, os.path.join(staging, STATE_FILE))
        np.savez(os.path.join(staging, "random.npz"), *[np.asarray(state) for state in _random_states(model)])
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in _epoch_dirs(backup)[:-_KEPT]:
        shutil.rmtree(old[1], ignore_errors=True)


def restore_latest(model, model_dir):
    """Load the newest readable epoch checkpoint into the compiled `model`; returns the
    number of epochs it holds (0 when there is none). Staging folders a killed run
    left behind are removed."""
    backup = os.path.join(model_dir, BACKUP_DIR)
    for stale in glob.glob(os.path.join(backup, ".epoch-*.tmp")):
        shutil.rmtree(stale, ignore_errors=True)
    problems = []
    for epochs_done, path in reversed(_epoch_dirs(backup)):
        try:
            build_optimizer(model)
            state = os.path.join(path, STATE_FILE)
            model.load_weights(state if os.path.isfile(state) else os.path.join(path, "state.weights.h5"))
            with np.load(os.path.join(path, "random.npz")) as saved:
                states = [saved[f"arr_{index}"] for index in range(len(saved.files))]
        except Exception as error:  # a damaged checkpoint: try the one before
            problems.append(f"{path}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
            continue
        variables = _random_states(model)
        if len(states) != len(variables):
            problems.append(f"{path}: {len(states)} random states for {len(variables)} generators")
            continue
        for variable, value in zip(variables, states):
            variable.assign(value)
        return epochs_done
    if problems:
        raise InputError(backup, "no epoch checkpoint could be read (" + "; ".join(problems) + ")")
    return 0


def _epoch_dirs(backup):
    found = []
    for name in os.listdir(backup) if os.path.isdir(backup) else ():
        match = _EPOCH_DIR.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(backup, name)))
    return sorted(found)


def _random_states(model):
    """The state variables of the random-number generators of the model's layers."""
    import keras

    states, seen = [], set()
    for layer in model._flatten_layers(include_self=True):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator) and id(value) not in seen:
                seen.add(id(value))
                states.append(value.state)
    return states


def build_optimizer(model):
    """Create the compiled model's optimizer variables now. Built before fit traces its
    step, they exist already; created inside the first trace, they made TensorFlow trace
    the whole train step twice (a cellular run's first epoch: about 9 s more on 2 cores)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
