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


def test_unknown_task_and_preset():
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        tasks.get("nope")
    with pytest.raises(ConfigError, match="unknown preset"):
        config_lib.resolve(tasks.get("cryoet"), "huge")
