"""Typed configuration: YAML files turned into frozen dataclasses, with overrides.

`from_dict` checks every key and type against the dataclass and names the valid
keys when one is unknown; nested dataclasses, lists/tuples of them, optional
values and plain scalars are supported. `apply_overrides` takes `a.b=value`
strings, parsing each value as YAML.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from evolve.llm import ModelConfig, RetryPolicy


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message says where and why."""


def load_yaml(path: Path) -> dict:
    """Read a YAML mapping; a missing file or a non-mapping is a ConfigError."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of `data` with each `dotted.key=value` override applied."""
    result = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return result


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking keys and types."""
    where = where or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{unknown[0]}; valid keys: {', '.join(sorted(fields))}")
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, f"{where}.{name}")
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where} is missing required key(s): {', '.join(missing)}")
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits no type")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            value = [value] if origin is tuple and args and args[-1] is Ellipsis else value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, not {type(value).__name__}")
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, not {type(value).__name__}")
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}; got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where} must be {hint.__name__}, not bool")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{where} must be {hint.__name__}, not {type(value).__name__} "
                          f"({value!r})")
    return value


# ---------------------------------------------------------------- the run's configuration

@dataclass(frozen=True)
class EvolutionConfig:
    """Islands, selection and proposal mix."""

    generations: int = 400
    num_islands: int = 4
    seed: int = 0
    parent_selection: str = "power_law"  # power_law | weighted_sigmoid | tournament
    selection_options: dict = field(default_factory=dict)
    patch_types: dict = field(default_factory=lambda: {"diff": 0.6, "full": 0.3, "cross": 0.1})
    inspirations_island: int = 2
    inspirations_archive: int = 1
    failures_in_prompt: int = 3
    migration_interval: int = 20
    stagnation_patience: int = 0  # migration rounds without improvement before a reset; 0 = off
    max_in_flight: int = 4


@dataclass(frozen=True)
class LLMSettings:
    """The models to ask and how to choose between them."""

    models: tuple[ModelConfig, ...] = ()
    selector: str = "ucb"  # ucb | fixed
    exploration: float = 1.0
    cost_aware: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    offline_fallback: bool = True


@dataclass(frozen=True)
class EvaluationSettings:
    """How candidates are evaluated: parallel workers and a watchdog above the task's limits.

    backend `local` uses joblib worker processes on this machine; `dask` submits to a
    dask.distributed cluster at `scheduler` (`tcp://host:8786`), or, with `local`, to a
    LocalCluster of `n_jobs` single-threaded worker processes on 127.0.0.1.
    """

    n_jobs: int = 2
    watchdog_s: float = 600.0
    backend: Literal["local", "dask"] = "local"
    scheduler: str = "local"

    def __post_init__(self):
        if self.n_jobs < 1 or self.watchdog_s <= 0:
            raise ConfigError("evaluation.n_jobs >= 1 and evaluation.watchdog_s > 0")
        if self.backend == "dask" and importlib.util.find_spec("distributed") is None:
            raise ConfigError("evaluation.backend=dask needs dask.distributed: "
                              "pip install -e \".[dask]\"")


@dataclass(frozen=True)
class Budget:
    """Caps that stop the run cleanly (None = no cap)."""

    max_wall_s: float | None = None
    max_cost_usd: float | None = None


@dataclass(frozen=True)
class RunConfig:
    """A whole run: the task (a mapping owned by the task) plus the engine's settings."""

    task: dict = field(default_factory=dict)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    llm: LLMSettings = field(default_factory=LLMSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    budget: Budget = field(default_factory=Budget)
    results_root: str = "results"
    run_name: str | None = None
    prompts_dir: str = "configs/prompts"
    report_every: int = 10


def compose(configs_dir: Path, variant: str, overrides: list[str] = ()) -> dict:
    """The variant's YAML with its `task: NAME` replaced by configs/task/NAME.yaml.

    A variant may adjust the task under `task_overrides`; command-line overrides
    (`evolution.generations=10`, `task.rebalance_interval=50`) are applied last.
    """
    variant_path = Path(variant)
    if not variant_path.suffix:
        variant_path = configs_dir / "variant" / f"{variant}.yaml"
    data = load_yaml(variant_path)
    task_name = data.pop("task", None)
    if not isinstance(task_name, str):
        raise ConfigError(f"{variant_path}: 'task' must name a file in {configs_dir / 'task'}")
    task = load_yaml(configs_dir / "task" / f"{task_name}.yaml")
    task_overrides = data.pop("task_overrides", {}) or {}
    data["task"] = apply_overrides(task, [f"{k}={_yaml_scalar(v)}"
                                          for k, v in _flatten(task_overrides)])
    return apply_overrides(data, list(overrides))


def _flatten(data: dict, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def run_config_from_dict(data: dict) -> RunConfig:
    """Check and build a RunConfig; unknown keys and wrong types are ConfigErrors."""
    config = from_dict(RunConfig, data, "config")
    evo = config.evolution
    if evo.generations < 0 or evo.num_islands < 1 or evo.max_in_flight < 1:
        raise ConfigError("evolution.generations >= 0, num_islands >= 1, max_in_flight >= 1")
    bad = set(evo.patch_types) - {"diff", "full", "cross"}
    if bad or not any(float(v) > 0 for v in evo.patch_types.values()):
        raise ConfigError("evolution.patch_types: probabilities for diff, full and cross, "
                          f"at least one positive (unknown: {sorted(bad)})")
    return config
