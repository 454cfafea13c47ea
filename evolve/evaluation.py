"""Evaluate candidates in parallel worker processes (joblib's loky executor).

The task's evaluator runs in a worker and itself runs the candidate in a
killable sandbox with the task's limits; the pool adds a watchdog above that:
a worker that does not answer within `watchdog_s` is killed with the pool's
other workers, and its candidate is reported as failed. `make_pool` picks this
pool or the dask.distributed one (`evolve.dask_backend`) from the settings.
"""

from __future__ import annotations

import importlib
import time
import traceback
from concurrent.futures import Future
from pathlib import Path

from joblib.externals.loky import get_reusable_executor

from evolve import secret_env
from evolve.scratch import make_scratch

PREPARE_FUNCTION = "prepare_task"  # optional, in the evaluator's module


def _module_and_function(entry: str):
    module_name, _, function = entry.partition(":")
    return importlib.import_module(module_name), function


def evaluate_candidate(entry: str, program_path: str, task: dict, results_dir: str | None,
                       prepared=None) -> dict:
    """Run the task's evaluator `module:function` on one program; never raises.

    The evaluator takes (program_path, task_config_mapping, results_dir) and returns
    {"correct": bool, "error": str | None, "metrics": dict, "feedback": str}; it is also
    given `prepared=` (what the module's `prepare_task` returned) when that is not None.
    """
    started = time.perf_counter()
    secret_env.warn_if_present()
    try:
        module, function = _module_and_function(entry)
        extra = {} if prepared is None else {"prepared": prepared}
        result = dict(getattr(module, function)(program_path, task, results_dir, **extra))
    except Exception as exc:  # the evaluator itself failed: report, do not crash the run
        tail = traceback.format_exc()[-1500:]
        result = {"correct": False, "metrics": {}, "feedback": "",
                  "error": f"evaluator failed: {type(exc).__name__}: {exc}\n{tail}"}
    result["wall_seconds"] = time.perf_counter() - started
    return result


def evaluate_code(entry: str, code: str, name: str, task: dict, results_dir: str | None,
                  prepared=None) -> dict:
    """evaluate_candidate on program text: for workers that do not share the run folder."""
    with make_scratch("evolve-candidate-") as folder:
        path = Path(folder) / name
        path.write_text(code)
        return evaluate_candidate(entry, str(path), task, results_dir, prepared)


def prepared_data(entry: str, task: dict):
    """What the evaluator's module `prepare_task(task)` gives (e.g. the trace), or None."""
    module, _ = _module_and_function(entry)
    prepare = getattr(module, PREPARE_FUNCTION, None)
    return None if prepare is None else prepare(task)


def make_pool(settings, entry: str, task: dict):
    """The pool `settings` (an EvaluationSettings) asks for. Its workers start without
    secrets: secret-looking variables leave this process's environment first (the LLM
    clients hold their keys already)."""
    secret_env.withdraw()
    if settings.backend == "dask":
        from evolve.dask_backend import DaskEvaluationPool  # an optional dependency

        return DaskEvaluationPool(settings, entry, task)
    return EvaluationPool(settings.n_jobs, settings.watchdog_s)


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

    def shutdown(self, kill: bool = False) -> None:
        """Stop the workers: after they finish, or at once (`kill`, e.g. on Ctrl-C)."""
        self._executor.shutdown(wait=not kill, kill_workers=kill)
