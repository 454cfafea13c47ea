"""Evaluate candidates in parallel worker processes on this machine (joblib's loky).

The task runs in a worker and itself runs the candidate in a killable sandbox with
the task's limits; the pool adds a watchdog above that: a worker that does not answer
within `watchdog_s` of starting the evaluation is killed with the pool's other workers,
and its candidate is reported as failed. The clock starts when a worker starts the
evaluation, not when it is submitted (an evaluation waiting for a free worker is not
late): the worker marks the start with a file in the pool's scratch folder.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path

from joblib.externals.loky import get_reusable_executor

from evolve.evaluation.worker import evaluate_candidate
from evolve.scratch import make_scratch


def evaluate_marked(mark: str, entry: str, options: Mapping, program_path: str,
                    results_dir: str | None) -> dict:
    """In a worker: note the start (file `mark`), then evaluate_candidate."""
    Path(mark).touch()
    return evaluate_candidate(entry, options, program_path, results_dir)


class EvaluationPool:
    """Submit evaluations; find and kill the ones past the watchdog."""

    def __init__(self, n_jobs: int, watchdog_s: float, entry: str, options: Mapping):
        self.n_jobs = n_jobs
        self.watchdog_s = watchdog_s
        self.entry = entry
        self.options = dict(options)
        self._executor = get_reusable_executor(max_workers=n_jobs, timeout=300)
        self._marks = make_scratch("evolve-pool-")
        self._count = itertools.count()
        self._pending: dict[Future, Path] = {}  # evaluation -> its start mark

    def submit(self, program_path: str, results_dir: str | None = None) -> Future:
        """Start one evaluation; the future's result is evaluate_candidate's dict."""
        mark = Path(self._marks.name) / str(next(self._count))
        future = self._executor.submit(evaluate_marked, str(mark), self.entry, self.options,
                                       program_path, results_dir)
        self._pending[future] = mark
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future) -> None:
        mark = self._pending.pop(future, None)
        if mark is not None:
            mark.unlink(missing_ok=True)

    def overdue(self) -> list[Future]:
        """Evaluations that started (in a worker) longer ago than the watchdog."""
        now = time.time()
        late = []
        for future, mark in list(self._pending.items()):
            try:
                started = os.stat(mark).st_mtime
            except FileNotFoundError:
                continue  # waiting for a worker, or just finished
            if now - started > self.watchdog_s:
                late.append(future)
        return late

    def restart(self) -> None:
        """Kill every worker (in-flight evaluations fail) and start fresh ones."""
        self._executor.shutdown(wait=False, kill_workers=True)
        for future in list(self._pending):
            self._forget(future)
        # kill_workers=True here too: replacing a shut-down executor shuts it down again,
        # and without it that call withdraws the kill (hung workers would run on).
        self._executor = get_reusable_executor(max_workers=self.n_jobs, timeout=300,
                                               kill_workers=True)

    def shutdown(self, kill: bool = False) -> None:
        """Stop the workers: after they finish, or at once (`kill`, e.g. on Ctrl-C); either
        way they are gone on return, so their scratch folders can be swept."""
        self._executor.shutdown(wait=True, kill_workers=kill)
        self._marks.cleanup()
