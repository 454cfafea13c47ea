"""The EPLB task behind the engine's contract: its description follows its options."""

from __future__ import annotations

import pytest

from eplb.task import EplbTask
from evolve.config import ConfigError, compose, run_config_from_dict
from evolve.task import load_task
from run_evo import PROJECT_ROOT


def description(*overrides: str) -> str:
    config = run_config_from_dict(compose(PROJECT_ROOT / "configs", "eplb_example",
                                          list(overrides)))
    task = load_task(config.task.engine.entry, config.task.options)
    assert isinstance(task, EplbTask)
    return " ".join(task.describe(config.task.engine.description).split())


def test_the_description_says_what_the_options_say():
    default = description()
    assert "up to 8 earlier windows" in default
    assert "min(1, 0.02 s / mean time per call)" in default
    assert "combined_score = the mean of balancedness_gpu and speed_score." in default
    changed = description("task.history_windows=3", "task.score.speed_reference_s=0.05",
                          "task.score.speed=2", "task.score.locality=1")
    assert "up to 3 earlier windows" in changed
    assert "min(1, 0.05 s / mean time per call)" in changed
    assert ("combined_score = (1 x balancedness_gpu + 2 x speed_score + 1 x locality_score)"
            " / 4.") in changed
    assert "balancedness_gpu alone" in description("task.score.speed=0")
    assert "{" not in default and "}" not in default


def test_bad_options_and_placeholders_are_config_errors():
    with pytest.raises(ConfigError, match="task.timing.repeats must be >= 1"):
        EplbTask({"timing": {"repeats": 0}}).check()
    with pytest.raises(ConfigError, match="placeholder 'windows' is not allowed.*history_windows"):
        EplbTask({}).describe("up to {windows} windows")
