"""The EPLB task's configuration (`configs/task/eplb.yaml`), typed and checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eplb.placement import Scenario
from eplb.synthetic import SyntheticSpec
from evolve.config import ConfigError, apply_overrides, from_dict, load_yaml
from evolve.sandbox import Limits

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TASK = PROJECT_ROOT / "configs" / "task" / "eplb.yaml"


@dataclass(frozen=True)
class ScoreWeights:
    """combined_score = weighted mean of balancedness_gpu and speed_score."""

    balancedness: float = 1.0
    speed: float = 1.0
    speed_reference_s: float = 0.02


@dataclass(frozen=True)
class Timing:
    """How `rebalance_experts` is timed: warm-up calls, then the median of `repeats`."""

    warmup: int = 1
    repeats: int = 3
    torch_threads: int = 1


@dataclass(frozen=True)
class TaskConfig:
    """Everything the evaluator needs to score a candidate."""

    name: str = "eplb"
    description: str = ""
    initial_program: str = "initial.py"
    evaluator: str = "eplb.evaluator:evaluate_task"
    workload: str = "synthetic"
    rebalance_interval: int = 100
    max_windows: int | None = None
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    scenarios: tuple[Scenario, ...] = (Scenario("default", 288, 8, 4, 32),)
    score: ScoreWeights = field(default_factory=ScoreWeights)
    timing: Timing = field(default_factory=Timing)
    limits: Limits = field(default_factory=Limits)

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the project root unless absolute."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path


def load_task_config(path: str | Path | None = None, overrides: list[str] = ()) -> TaskConfig:
    """Read a task YAML (default: configs/task/eplb.yaml) with `key=value` overrides."""
    data = load_yaml(Path(path) if path else DEFAULT_TASK)
    return task_config_from_dict(apply_overrides(data, list(overrides)))


def task_config_from_dict(data: dict) -> TaskConfig:
    """Build and check a TaskConfig from a plain mapping."""
    config = from_dict(TaskConfig, data, "task")
    names = [s.name for s in config.scenarios]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"task.scenarios must list at least one scenario, each with its own "
                          f"name; got {names}")
    return config
