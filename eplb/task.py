"""The EPLB task behind the engine's `Task` protocol (evolve/task.py).

An adapter over eplb.evaluator's entry points: the options are the task YAML's keys
other than `engine:` (checked as a `TaskConfig`); `evaluate` keeps the engine's metrics
flat (the per-scenario and per-window detail goes to metrics.json when a results folder
is given).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

from eplb.config import TaskConfig, task_config_from_dict
from eplb.evaluator import evaluate_task, preflight_task, prepare_task
from evolve.config import ConfigError
from evolve.task import flat_metrics

# the parts of combined_score, by their weight in `score:`
SCORE_PARTS = {"balancedness": "balancedness_gpu", "speed": "speed_score",
               "migration": "migration_score", "locality": "locality_score"}


class EplbTask:
    """Expert placement: a candidate's `rebalance_experts` scored window by window."""

    def __init__(self, options: Mapping):
        self.options = dict(options)
        self._config: TaskConfig | None = None

    @property
    def config(self) -> TaskConfig:
        """The options, checked (ConfigError naming the key otherwise)."""
        if self._config is None:
            self._config = task_config_from_dict(self.options)
        return self._config

    def check(self) -> list[str]:
        """Check the options, and whether this machine can jail candidates as
        `limits.isolation` asks (SandboxError if not); returns the jail's warning."""
        return preflight_task(self.options)

    def prepare(self) -> dict:
        """The windows every evaluation needs, loaded once (shipped to remote workers)."""
        return prepare_task(self.options)

    def evaluate(self, program_path: str, results_dir: str | None = None,
                 prepared: dict | None = None) -> dict:
        """eplb.evaluator.evaluate_task, with flat metrics."""
        result = evaluate_task(program_path, self.options, results_dir, prepared)
        return {**result, "metrics": flat_metrics(result["metrics"])}

    def describe(self, template: str) -> str:
        """`template` with {placeholders} filled from the options: any option by its key
        (`{history_windows}`, `{score.speed_reference_s}`), and `{combined_score}`, how
        the score is made from its weighted parts."""
        values = {f.name: getattr(self.config, f.name) for f in fields(TaskConfig)}
        values["combined_score"] = combined_score_text(self.config)
        try:
            return template.format_map(values)
        except (KeyError, AttributeError, IndexError, ValueError) as exc:
            raise ConfigError(f"task engine.description: placeholder {exc} is not allowed: "
                              f"use the task's options ({', '.join(sorted(values))}); write "
                              "{{ and }} for literal braces") from None


def combined_score_text(config: TaskConfig) -> str:
    """How combined_score is made, in words: 'the mean of a and b' or a weighted mean."""
    weights = {SCORE_PARTS[name]: getattr(config.score, name) for name in SCORE_PARTS}
    used = {part: w for part, w in weights.items() if w > 0}
    if len(used) == 1:
        return f"{next(iter(used))} alone"
    if len(set(used.values())) == 1:
        names = list(used)
        return f"the mean of {', '.join(names[:-1])} and {names[-1]}"
    terms = " + ".join(f"{w:g} x {part}" for part, w in used.items())
    return f"({terms}) / {sum(used.values()):g}"
