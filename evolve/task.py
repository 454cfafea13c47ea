"""The contract between the engine and a task.

A task's YAML (configs/task/NAME.yaml) has two parts. Its `engine:` section is a
`TaskSpec`, the only part the engine reads: which `Task` class to build, the initial
program, the reference programs, the prompt's task description (a template), the
fitness metric, the metrics shown to the model, the report columns and Pareto axes,
and the research directions one of which each prompt asks to follow.
Every other key is the task's own option, read only by the task: the engine passes
them, as a plain mapping, to the task's constructor, in the engine and in every
evaluation worker (local or remote), so a task is rebuilt anywhere from plain data.

A task is any class with the four methods of `Task`. `evaluate` returns flat metrics
(`Metrics`); the task may write its detailed results to `results_dir` itself.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Metrics = dict[str, float | int | str]


@dataclass(frozen=True)
class TaskSpec:
    """What the engine reads from a task's `engine:` section."""

    entry: str  # "module:Class" of the Task, built as Class(options)
    initial_program: str  # the seed, relative to the project root
    fitness: str  # the metric the engine maximises (a program's `score`)
    references: tuple[str, ...] = ()  # programs ranked beside evolved ones, never parents
    description: str = ""  # the prompt's task text; {placeholders} filled by Task.describe
    prompt_metrics: tuple[str, ...] = ()  # shown to the model, in this order (empty: all)
    report_columns: tuple[str, ...] = ()  # leaderboard columns after the score
    pareto: tuple[str, ...] = ()  # (metric to maximise, metric to minimise), or none
    directions: dict = field(default_factory=dict)  # research directions: name -> prompt text


class Task(Protocol):
    """A task as the engine sees it; built as `Class(options)` from the task's options."""

    def check(self) -> list[str]:
        """Check the options (raise ValueError naming the key, the value and what is
        allowed) and whether this machine can run the task; return warnings for the user.
        Runs in the engine before anything is written to disk."""

    def prepare(self) -> Any:
        """Data every evaluation needs (or None), made once per run in the engine; a
        remote pool ships it to each of its workers once, as `prepared`."""

    def evaluate(self, program_path: str, results_dir: str | None = None,
                 prepared: Any = None) -> dict:
        """Evaluate one program: {"correct": bool, "error": str | None, "metrics":
        Metrics, "feedback": str (for the next prompt)}. Problems of the program are
        results, not exceptions."""

    def describe(self, template: str) -> str:
        """The prompt's task description: `template` with its {placeholders} filled from
        the resolved options (ValueError naming an unknown placeholder)."""


def load_task(entry: str, options: Mapping) -> Task:
    """Build the task `module:Class` from its options; ValueError if it cannot be found."""
    module_name, sep, name = entry.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"task engine.entry={entry!r} is not allowed: it must name a class "
                         f"as module:Class, e.g. mytask:MyTask")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"task engine.entry={entry!r} cannot be loaded: {exc}") from None
    return cls(dict(options))


def flat_metrics(metrics: Mapping) -> Metrics:
    """The metrics the engine keeps: string keys with number or text values (finite
    numbers only); nested detail is the task's to write to its own files."""
    return {str(k): v for k, v in metrics.items()
            if isinstance(v, str) or (isinstance(v, int | float)
                                      and math.isfinite(v))}
