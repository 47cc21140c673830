"""Task configurations: presets, `key=value` overrides typed by the dataclass fields,
and the `config.json` that makes a model directory self-describing."""

import dataclasses
import json
import math
import os
import typing

from biomodels.atomic import write_text_atomic
from biomodels.errors import ConfigError, InputError

CONFIG_FILE = "config.json"
CALIBRATION_FILE = "calibration.json"


def resolve(task, preset="quick", overrides=()):
    """The task's preset with `key=value` overrides applied."""
    presets = task.presets()
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r} for task {task.name}; choose one of {sorted(presets)}")
    config = presets[preset]
    changes = dict(parse_override(type(config), text) for text in overrides)
    config = dataclasses.replace(config, **changes) if changes else config
    check_values(config)
    return config


# Ranges of the settings that have one, by name (a setting of any task with that name):
# (lowest, highest, whether the lowest is allowed, whether the highest is allowed).
_RANGES = {
    "learning_rate": (0.0, 1.0, False, True),
    "weight_decay": (0.0, 1.0, True, False),
    "beta_1": (0.0, 1.0, True, False),
    "beta_2": (0.0, 1.0, True, False),
    "dropout": (0.0, 1.0, True, False),
    "zoom_probability": (0.0, 1.0, True, True),
    "aux_pval_cutoff": (0.0, 1.0, False, True),
    "target_recall": (0.0, 1.0, False, True),
    "triage_confidence": (0.0, 1.0, True, True),
    "flow_threshold": (0.0, math.inf, True, True),
    "frame_interval_s": (0.0, math.inf, False, True),
    "ri_scale": (0.0, math.inf, False, True),
    "diameter_mean": (0.0, math.inf, False, True),
    "batch_size": (1, math.inf, True, True),
    "epochs": (1, math.inf, True, True),
}
# settings that may be negative (thresholds on logits); every other number must not be
_SIGNED = {"cellprob_threshold"}


def check_values(config):
    """Raise a ConfigError naming the setting unless every number is finite and in its
    range: a learning rate of 1e6, -1 or nan would otherwise train a useless model."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        for number in value if isinstance(value, tuple) else (value,):
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            if not math.isfinite(number):
                raise ConfigError(f"--set {field.name}={_shown(value)}: must be a finite number")
            low, high, low_ok, high_ok = _RANGES.get(field.name, (-math.inf if field.name in _SIGNED else 0, math.inf, True, True))
            if number < low or number > high or (number == low and not low_ok) or (number == high and not high_ok):
                if high == math.inf:
                    allowed = f"{'at least' if low_ok else 'above'} {low:g}"
                else:
                    allowed = f"in {'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"
                raise ConfigError(f"--set {field.name}={_shown(value)}: must be {allowed}")


def _shown(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def check_choice(name, value, choices):
    """Raise a ConfigError naming the --set field unless `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(f"--set {name}={value}: choose one of {', '.join(choices)}")


def parse_override(config_class, text):
    """('key', typed value) from 'key=value', typed by the config field."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        raise ConfigError(f"--set {text!r}: expected key=value")
    hints = typing.get_type_hints(config_class)
    if key not in hints:
        raise ConfigError(f"--set {key}: unknown setting; known: {', '.join(sorted(hints))}")
    try:
        return key, _coerce(raw.strip(), hints[key])
    except (TypeError, ValueError) as error:
        raise ConfigError(f"--set {key}={raw}: {error}") from None


def _coerce(raw, hint):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union and type(None) in args:
        if raw.lower() in ("", "none", "null"):
            return None
        return _coerce(raw, next(a for a in args if a is not type(None)))
    if origin is tuple:
        items = [item for item in raw.strip("()[] ").split(",") if item.strip()]
        element = args[0] if args else str
        return tuple(_coerce(item.strip(), element) for item in items)
    if hint is bool:
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ValueError("expected true or false")
    if hint is int:
        return int(raw)
    if hint is float:
        return float(raw)
    if hint is str:
        return raw
    raise TypeError(f"cannot set a value of type {hint}")


def to_dict(config):
    return dataclasses.asdict(config)


def from_dict(task, values):
    """Rebuild a task's Config from a dict (lists become tuples)."""
    hints = typing.get_type_hints(task.Config)
    unknown = set(values) - set(hints)
    if unknown:
        raise ConfigError(f"unknown settings for task {task.name}: {', '.join(sorted(unknown))}")
    fixed = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    return task.Config(**fixed)


def model_config(task, predictor):
    """The typed Config a predictor's model was trained with: the configuration its run
    or export recorded, else the task's quick preset (a served model records none)."""
    return from_dict(task, predictor.config) if predictor.config else task.presets()["quick"]


def read_run_config(model_dir):
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise InputError(path, "not found: is this a model directory written by biomodels.train?")
    return read_json(path)


def read_calibration(task, model_dir):
    """What the task fitted on the validation split after training ({} if nothing),
    each of the task's `calibration_fields` checked for its type: a damaged file is one
    InputError naming it and the field."""
    path = os.path.join(model_dir, CALIBRATION_FILE)
    if not os.path.isfile(path):
        return {}
    calibration = read_json(path)
    if not isinstance(calibration, dict):
        raise InputError(path, f"is not a JSON object of fitted values (found a {type(calibration).__name__})")
    for field, kind in task.calibration_fields.items():
        value = calibration.get(field)
        if value is None or not isinstance(value, kind) or isinstance(value, bool):
            found = "missing" if field not in calibration else f"{type(value).__name__} {str(value)[:40]!r}"
            expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise InputError(path, f"field {field}: expected {expected}, found {found}")
    return calibration


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except OSError as error:
        raise InputError(path, f"cannot read: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise InputError(path, f"not valid JSON: {error}") from None


def write_json_atomic(path, value):
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")
