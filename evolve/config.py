"""Typed configuration: YAML files turned into frozen dataclasses, with overrides.

`from_dict` checks every key and type against the dataclass and names the valid
keys when one is unknown; nested dataclasses, lists/tuples of them, optional
values and plain scalars are supported. `apply_overrides` takes `a.b=value`
strings, parsing each value as YAML.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from evolve import selection
from evolve.prompts import PATCH_TYPES
from evolve.task import TaskSpec


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
    """Return a copy of `data` with each `dotted.key=value` override applied; a list item
    is addressed by its index (`llm.models[0].temperatures=[0.5]`)."""
    result = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        steps = [step for part in key.split(".") for step in _steps(part, item)]
        node = result
        for step in steps[:-1]:
            node = _child(node, step, item)
        if isinstance(steps[-1], int):
            _child(node, steps[-1], item)  # the item must exist
        node[steps[-1]] = yaml.safe_load(raw)
    return result


def _steps(part: str, item: str) -> list[str | int]:
    """`models[0]` -> ["models", 0]; `retry` -> ["retry"]."""
    name, _, rest = part.partition("[")
    indices = rest.rstrip("]").split("][") if rest else []
    if not name or not all(i.isdigit() for i in indices):
        raise ConfigError(f"override {item!r}: {part!r} must be a name or name[index]")
    return [name, *map(int, indices)]


def _child(node: Any, step: str | int, item: str) -> Any:
    if isinstance(step, int):
        if not isinstance(node, list) or step >= len(node):
            raise ConfigError(f"override {item!r}: no item [{step}] there "
                              f"({len(node) if isinstance(node, list) else 0} items)")
        return node[step]
    if not isinstance(node, dict):
        raise ConfigError(f"override {item!r}: {step!r} is not in a section")
    child = node.setdefault(step, {})
    if not isinstance(child, dict | list):
        raise ConfigError(f"override {item!r}: {step!r} is not a section")
    return child


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
class ModelConfig:
    """One model behind an OpenAI-compatible endpoint.

    `api_key_env` is the NAME of the environment variable holding the key; prices are
    USD per million tokens; `weight` is used by fixed-weight model choice.
    """

    name: str
    base_url: str | None = None
    api_key_env: str | None = None
    temperatures: tuple[float, ...] = (0.7,)
    max_tokens: int = 4096
    context_window: int = 32768
    price_in_per_m: float = 0.0
    price_out_per_m: float = 0.0
    weight: float = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """Per-attempt timeout and exponential backoff with full jitter between attempts."""

    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0



@dataclass(frozen=True)
class EvolutionConfig:
    """Islands, selection and proposal mix."""

    generations: int = 400
    num_islands: int = 4
    seed: int = 0
    parent_selection: str = "power_law"  # a name in selection.PARENT_SELECTORS
    selection_options: dict = field(default_factory=dict)  # that selector's options
    patch_types: dict = field(default_factory=lambda: {"diff": 0.6, "full": 0.3, "cross": 0.1})
    inspirations_island: int = 2
    inspirations_archive: int = 1
    failures_in_prompt: int = 3
    migration_interval: int = 20
    stagnation_patience: int = 0  # migration rounds without improvement before a reset; 0 = off
    max_in_flight: int = 4
    memory_children: int = 5  # the parent's latest children shown in the prompt; 0 = none
    memory_ledger: int = 4  # ideas per list of the island's ledger in the prompt; 0 = none
    summary_every: int = 0  # an LLM call condenses the ledgers every N generations; 0 = off
    literal_variants: int = 4  # programs per island alike up to numeric literals (>= 1)
    adaptive_patch_types: bool = False  # patch types chosen by UCB on the models' reward


@dataclass(frozen=True)
class LLMSettings:
    """The models to ask and how to choose between them."""

    models: tuple[ModelConfig, ...] = ()
    selector: Literal["ucb", "fixed"] = "ucb"
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


@dataclass(frozen=True)
class Budget:
    """Caps that stop the run cleanly (None = no cap)."""

    max_wall_s: float | None = None
    max_cost_usd: float | None = None


@dataclass(frozen=True)
class TaskSection:
    """The task's YAML split in two: its `engine:` section, and its own options (every
    other key, read only by the task; see evolve/task.py)."""

    engine: TaskSpec
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """A whole run: the task plus the engine's settings."""

    task: TaskSection
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
    (`evolution.generations=10`, `task.some_option=50`) are applied last.
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
    """Check and build a RunConfig: keys, types, then values (`check_values`)."""
    config = from_dict(RunConfig, {**data, "task": _split_task(data.get("task"))}, "config")
    check_values(config)
    return config


def _split_task(task: Any) -> dict:
    """{"engine": the task's `engine:` section, "options": its other keys}."""
    if not isinstance(task, dict):
        raise ConfigError(f"config.task must be the task's mapping, not {type(task).__name__}")
    if not isinstance(task.get("engine"), dict):
        raise ConfigError(
            "the task has no engine: section (what the engine reads: entry, initial_program, "
            "fitness, ...; see evolve/task.py). A config.yaml from a run made before that "
            "section existed cannot be resumed: start a new run, or copy the engine: section "
            "of configs/task/NAME.yaml into the task: section of that config.yaml")
    options = {k: v for k, v in task.items() if k != "engine"}
    return {"engine": task["engine"], "options": options}


def _bad(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _at_least(values: dict[str, Any], minimum: float, strict: bool = False) -> None:
    """Every `key: value` must be >= minimum (> with `strict`); None means no cap."""
    for key, value in values.items():
        if value is not None and (value < minimum or (strict and value == minimum)):
            raise _bad(key, value, f"it must be {'>' if strict else '>='} {minimum:g}")


def check_values(config: RunConfig) -> None:
    """The checks types cannot express: names of strategies and their options, ranges,
    probabilities. Each error names the key, the value and what is allowed."""
    evo, llm, ev = config.evolution, config.llm, config.evaluation
    _at_least({"evolution.num_islands": evo.num_islands,
               "evolution.max_in_flight": evo.max_in_flight,
               "evaluation.n_jobs": ev.n_jobs, "report_every": config.report_every}, 1)
    _at_least({f"evolution.{k}": getattr(evo, k) for k in (
        "generations", "inspirations_island", "inspirations_archive", "failures_in_prompt",
        "migration_interval", "stagnation_patience", "memory_children", "memory_ledger",
        "summary_every")}, 0)
    _at_least({"evolution.literal_variants": evo.literal_variants}, 1)
    _at_least({"evaluation.watchdog_s": ev.watchdog_s, "budget.max_wall_s":
               config.budget.max_wall_s, "llm.retry.timeout_s": llm.retry.timeout_s}, 0, True)
    _at_least({"llm.retry.max_retries": llm.retry.max_retries,
               "llm.retry.backoff_base_s": llm.retry.backoff_base_s,
               "llm.retry.backoff_max_s": llm.retry.backoff_max_s,
               "llm.exploration": llm.exploration,
               "budget.max_cost_usd": config.budget.max_cost_usd}, 0)
    pareto = config.task.engine.pareto
    if len(pareto) not in (0, 2):
        raise _bad("task.engine.pareto", list(pareto),
                   "two metrics, [one to maximise, one to minimise], or none")
    for name, text in config.task.engine.directions.items():
        if not isinstance(name, str) or not isinstance(text, str) or not text.strip():
            raise _bad(f"task.engine.directions.{name}", text,
                       "a mapping of direction names to non-empty texts for the prompt")
    _check_selection(evo)
    _check_patch_types(evo.patch_types)
    _check_models(llm)
    if ev.backend == "dask" and importlib.util.find_spec("distributed") is None:
        raise ConfigError("evaluation.backend=dask needs dask.distributed, which is not "
                          "installed: pip install -e \".[dask]\" (or evaluation.backend=local)")


def _check_selection(evo: EvolutionConfig) -> None:
    kinds = selection.PARENT_SELECTORS
    if evo.parent_selection not in kinds:
        raise _bad("evolution.parent_selection", evo.parent_selection,
                   f"one of {', '.join(sorted(kinds))}")
    accepted = inspect.signature(kinds[evo.parent_selection]).parameters
    for name, value in evo.selection_options.items():
        if name not in accepted:
            raise _bad(f"evolution.selection_options.{name}", value,
                       f"parent_selection {evo.parent_selection!r} takes "
                       f"{', '.join(accepted) or 'no options'}; set evolution.selection_options"
                       f" to a mapping of those (or {{}} for the defaults)")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(f"evolution.selection_options.{name}", value, "it must be a number")
    try:
        selection.make_parent_selector(evo.parent_selection, **evo.selection_options)
    except ValueError as exc:
        raise ConfigError(f"evolution.selection_options={evo.selection_options!r} is not "
                          f"allowed: {exc}") from None


def _check_patch_types(patch_types: dict) -> None:
    for kind, share in patch_types.items():
        if kind not in PATCH_TYPES:
            raise _bad(f"evolution.patch_types.{kind}", share,
                       f"the patch types are {', '.join(PATCH_TYPES)}")
        if isinstance(share, bool) or not isinstance(share, int | float) or share < 0:
            raise _bad(f"evolution.patch_types.{kind}", share, "a probability, >= 0")
    total = sum(patch_types.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise _bad("evolution.patch_types", patch_types,
                   f"probabilities of {', '.join(PATCH_TYPES)} summing to 1 (they sum to "
                   f"{total:g})")


def _check_models(llm: LLMSettings) -> None:
    names = [m.name for m in llm.models]
    if len(set(names)) != len(names):
        raise _bad("llm.models", names, "each model once (names must differ)")
    for i, m in enumerate(llm.models):
        key = f"llm.models[{i}]"
        if not m.temperatures:
            raise _bad(f"{key}.temperatures", list(m.temperatures),
                       "at least one temperature, e.g. [0.7]")
        _at_least({f"{key}.temperatures[{j}]": t for j, t in enumerate(m.temperatures)}, 0)
        _at_least({f"{key}.max_tokens": m.max_tokens}, 1)
        _at_least({f"{key}.{k}": getattr(m, k)
                   for k in ("price_in_per_m", "price_out_per_m", "weight")}, 0)
        if m.context_window <= m.max_tokens:
            raise _bad(f"{key}.context_window", m.context_window,
                       f"more than max_tokens ({m.max_tokens}): the prompt needs room too")
    if llm.selector == "fixed" and llm.models and not any(m.weight > 0 for m in llm.models):
        raise _bad("llm.models[].weight", [m.weight for m in llm.models],
                   "with llm.selector=fixed at least one model needs a positive weight")
