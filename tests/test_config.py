"""Presets and typed key=value overrides."""

import pytest

from biomodels import config as config_lib
from biomodels import tasks
from biomodels.errors import ConfigError


def test_presets_and_typed_overrides():
    task = tasks.get("cryoet")
    paper = config_lib.resolve(task, "paper")
    assert (paper.base_filters, paper.depth, paper.batch_size, paper.epochs, paper.learning_rate) == (64, 5, 4, 50, 1e-3)
    config = config_lib.resolve(task, "quick", ["depth=3", "dropout=0.1", "class_weights=1,2,3,4,5,6", "lr_schedule=constant"])
    assert config.depth == 3 and config.dropout == 0.1
    assert config.class_weights == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert config_lib.from_dict(task, config_lib.to_dict(config)) == config


@pytest.mark.parametrize("override, message", [
    ("nonsense=1", "unknown setting"),
    ("depth=three", "invalid literal"),
    ("depth", "expected key=value"),
])
def test_bad_overrides_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.resolve(tasks.get("cryoet"), "quick", [override])


@pytest.mark.parametrize("task_name, override, message", [
    ("ccp", "learning_rate=1e6", "learning_rate=1000000.0: must be in (0, 1]"),
    ("ccp", "learning_rate=-1", "learning_rate=-1.0: must be in (0, 1]"),
    ("ccp", "learning_rate=nan", "learning_rate=nan: must be a finite number"),
    ("ccp", "frame_interval_s=0", "frame_interval_s=0.0: must be above 0"),
    ("ccp", "dropout=1", "dropout=1.0: must be in [0, 1)"),
    ("ccp", "target_recall=1.2", "target_recall=1.2: must be in (0, 1]"),
    ("cryoet", "batch_size=0", "batch_size=0: must be at least 1"),
    ("cryoet", "steps_per_epoch=-2", "steps_per_epoch=-2: must be at least 0"),
    ("cryoet", "class_weights=1,inf,1,1,1,1", "class_weights=1.0,inf,1.0,1.0,1.0,1.0: must be a finite number"),
    ("deepis", "zoom=1.1,-2", "zoom=1.1,-2.0: must be at least 0"),
])
def test_out_of_range_settings_are_refused(task_name, override, message):
    with pytest.raises(ConfigError) as error:
        config_lib.resolve(tasks.get(task_name), "quick", [override])
    assert str(error.value) == f"--set {message}"


def test_signed_settings_and_every_preset_pass():
    for name in tasks.names():
        task = tasks.get(name)
        for preset in task.presets():
            config_lib.resolve(task, preset)
    assert config_lib.resolve(tasks.get("cellular"), "quick", ["cellprob_threshold=-2"]).cellprob_threshold == -2.0


def test_unknown_task_and_preset():
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        tasks.get("nope")
    with pytest.raises(ConfigError, match="unknown preset"):
        config_lib.resolve(tasks.get("cryoet"), "huge")
