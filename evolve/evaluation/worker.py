"""What runs in an evaluation worker: build the task from plain data, evaluate one
program, never raise. Imports nothing but the task contract and two small helpers (no
LLM client, no YAML), so a worker starts fast."""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from pathlib import Path

from evolve import secret_env
from evolve.scratch import make_scratch
from evolve.task import flat_metrics, load_task


def evaluate_candidate(entry: str, options: Mapping, program_path: str,
                       results_dir: str | None = None, prepared=None) -> dict:
    """Evaluate one program with the task `entry` built from `options`.

    Returns the task's {"correct", "error", "metrics" (flat), "feedback"} plus
    "wall_seconds"; a task that raises gives a failed result that says so.
    """
    started = time.perf_counter()
    secret_env.warn_if_present()
    try:
        task = load_task(entry, options)
        result = dict(task.evaluate(program_path, results_dir, prepared))
        result["metrics"] = flat_metrics(result.get("metrics") or {})
    except Exception as exc:  # the task itself failed: report, do not crash the run
        tail = traceback.format_exc()[-1500:]
        result = {"correct": False, "metrics": {}, "feedback": "",
                  "error": f"evaluator failed: {type(exc).__name__}: {exc}\n{tail}"}
    result["wall_seconds"] = time.perf_counter() - started
    return result


def evaluate_code(entry: str, options: Mapping, code: str, name: str,
                  results_dir: str | None = None, prepared=None) -> dict:
    """evaluate_candidate on program text: for workers that do not share the run folder."""
    with make_scratch("evolve-candidate-") as folder:
        path = Path(folder) / name
        path.write_text(code)
        return evaluate_candidate(entry, options, str(path), results_dir, prepared)
