"""Evaluate candidates in parallel worker processes (joblib's loky executor).

The task's evaluator runs in a worker and itself runs the candidate in a
killable sandbox with the task's limits; the pool adds a watchdog above that:
a worker that does not answer within `watchdog_s` is killed with the pool's
other workers, and its candidate is reported as failed.
"""

from __future__ import annotations

import importlib
import time
import traceback
from concurrent.futures import Future

from joblib.externals.loky import get_reusable_executor


def evaluate_candidate(entry: str, program_path: str, task: dict, results_dir: str) -> dict:
    """Run the task's evaluator `module:function` on one program; never raises.

    The evaluator takes (program_path, task_config_mapping, results_dir) and returns
    {"correct": bool, "error": str | None, "metrics": dict, "feedback": str}.
    """
    started = time.perf_counter()
    try:
        module_name, _, function = entry.partition(":")
        evaluate = getattr(importlib.import_module(module_name), function)
        result = dict(evaluate(program_path, task, results_dir))
    except Exception as exc:  # the evaluator itself failed: report, do not crash the run
        tail = traceback.format_exc()[-1500:]
        result = {"correct": False, "metrics": {}, "feedback": "",
                  "error": f"evaluator failed: {type(exc).__name__}: {exc}\n{tail}"}
    result["wall_seconds"] = time.perf_counter() - started
    return result


class EvaluationPool:
    """Submit evaluations; find and kill the ones past the watchdog."""

    def __init__(self, n_jobs: int, watchdog_s: float):
        self.n_jobs = n_jobs
        self.watchdog_s = watchdog_s
        self._executor = get_reusable_executor(max_workers=n_jobs, timeout=300)
        self._started: dict[Future, float] = {}

    def submit(self, entry: str, program_path: str, task: dict, results_dir: str) -> Future:
        """Start one evaluation; the future's result is evaluate_candidate's dict."""
        future = self._executor.submit(evaluate_candidate, entry, program_path, task, results_dir)
        self._started[future] = time.monotonic()
        future.add_done_callback(lambda f: self._started.pop(f, None))
        return future

    def overdue(self) -> list[Future]:
        """Running evaluations older than the watchdog."""
        now = time.monotonic()
        return [f for f, t in list(self._started.items()) if now - t > self.watchdog_s]

    def restart(self) -> None:
        """Kill every worker (in-flight evaluations fail) and start fresh ones."""
        self._executor.shutdown(wait=False, kill_workers=True)
        self._started.clear()
        # kill_workers=True here too: replacing a shut-down executor shuts it down again,
        # and without it that call withdraws the kill (hung workers would run on).
        self._executor = get_reusable_executor(max_workers=self.n_jobs, timeout=300,
                                               kill_workers=True)

    def shutdown(self) -> None:
        """Stop the workers."""
        self._executor.shutdown(wait=True)
