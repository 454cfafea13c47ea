"""The EPLB task's configuration (`configs/task/eplb.yaml`), typed and checked."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from eplb import serving
from eplb.placement import Scenario
from eplb.synthetic import SyntheticSpec
from evolve.config import ConfigError, apply_overrides, from_dict, load_yaml
from evolve.sandbox import Limits

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TASK = PROJECT_ROOT / "configs" / "task" / "eplb.yaml"


@dataclass(frozen=True)
class ScoreWeights:
    """combined_score = weighted mean of balancedness_gpu, speed_score, migration_score and
    locality_score with these weights (formulas in eplb/evaluator.py)."""

    balancedness: float = 1.0
    speed: float = 1.0
    migration: float = 0.0
    locality: float = 0.0
    speed_reference_s: float = 0.02
    # what the balancedness weight scores: balancedness_gpu, or the modelled serving
    # throughput including migration (serving_throughput_vs_ideal, eplb/serving.py)
    target: Literal["balancedness", "throughput"] = "balancedness"


@dataclass(frozen=True)
class Rebalance:
    """When the deployment asks the candidate for a new placement (see eplb/dynamic.py)."""

    policy: Literal["every", "threshold", "similarity"] = "every"
    every_windows: int = 1
    threshold: float = 0.9
    similarity: float = 0.95
    warmup_windows: int = 0
    expert_bytes: int = 0
    # how a migration costs serving time (eplb/serving.py): the engine stops while the
    # weights move, or keeps serving with the old placement until they have arrived
    migration_mode: Literal["stop_the_world", "async"] = "stop_the_world"


@dataclass(frozen=True)
class HardwareSpec:
    """A named preset of eplb/serving.py, with any of its numbers replaced."""

    preset: str = "h800_ib400"
    achievable_tflops: float | None = None
    intra_node_gbps: float | None = None
    inter_node_gbps: float | None = None
    hidden_size: int | None = None
    moe_intermediate_size: int | None = None
    dispatch_bytes: float | None = None
    combine_bytes: float | None = None
    experts_per_token: int | None = None
    groups_per_token: int | None = None
    # DeepEP's kernels (eplb/serving.py): normal (high-throughput, prefill: one transfer
    # per token and remote node, forwarded over NVLink) or low_latency (decode: one RDMA
    # message per copy on a remote node)
    dispatch: Literal["normal", "low_latency"] = "normal"

    def resolve(self) -> serving.Hardware:
        """The preset with the overrides applied; ValueError names the presets."""
        overrides = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "preset"}
        return serving.hardware(self.preset, **overrides)


@dataclass(frozen=True)
class Timing:
    """How `rebalance_experts` is timed (eplb/call_timing.py): once per window, on its
    one call; before a scenario's first placement, `warmup` untimed calls on decoys,
    another only while they took less than `budget_s` (a slow program makes one).
    `repeats` has no effect since issue 14: it is accepted so that old configs load."""

    warmup: int = 1
    repeats: int = 1
    budget_s: float = 0.5
    torch_threads: int = 1


@dataclass(frozen=True)
class PlacementRules:
    """Placement properties that are valid but may be refused (see eplb/colocation.py)."""

    colocated_replicas: Literal["report", "error"] = "report"


@dataclass(frozen=True)
class TaskConfig:
    """Everything the evaluator needs to score a candidate."""

    name: str = "eplb"
    engine: dict = field(default_factory=dict)  # the engine's part (evolve/task.py); unread
    workload: str = "synthetic"
    rebalance_interval: int = 100
    max_windows: int | None = None
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    scenarios: tuple[Scenario, ...] = (Scenario("default", 288, 8, 4, 32),)
    rebalance: Rebalance = field(default_factory=Rebalance)
    hardware: HardwareSpec = field(default_factory=HardwareSpec)
    history_windows: int = 8
    score: ScoreWeights = field(default_factory=ScoreWeights)
    timing: Timing = field(default_factory=Timing)
    limits: Limits = field(default_factory=Limits)
    placement_rules: PlacementRules = field(default_factory=PlacementRules)

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
    minimums = {"rebalance.every_windows": (config.rebalance.every_windows, 1),
                "rebalance.warmup_windows": (config.rebalance.warmup_windows, 0),
                "rebalance.expert_bytes": (config.rebalance.expert_bytes, 0),
                "history_windows": (config.history_windows, 0),
                "timing.repeats": (config.timing.repeats, 1),
                "timing.warmup": (config.timing.warmup, 0),
                "timing.budget_s": (config.timing.budget_s, 0),
                "limits.timeout_s": (config.limits.timeout_s, 1),
                "limits.call_timeout_s": (config.limits.call_timeout_s, 0.1),
                "limits.memory_mb": (config.limits.memory_mb, 64)}
    minimums.update({f"score.{f.name}": (getattr(config.score, f.name), 0)
                     for f in fields(ScoreWeights) if f.name != "target"})
    for key, (value, minimum) in minimums.items():
        if value < minimum:
            raise ConfigError(f"task.{key} must be >= {minimum}; got {value}")
    try:
        config.hardware.resolve()
    except ValueError as exc:
        raise ConfigError(f"task.hardware: {exc}") from None
    weights = config.score
    if weights.balancedness + weights.speed + weights.migration + weights.locality <= 0:
        raise ConfigError("task.score: the weights must not all be 0")
    return config
