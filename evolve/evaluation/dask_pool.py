"""Evaluate candidates on a dask.distributed cluster (`evaluation.backend: dask`).

The same interface as `evolve.evaluation.local.EvaluationPool` (submit, overdue,
restart, shutdown), and the same work on the worker: `evaluate_code` writes the
candidate's text to a local temporary file and has the task (rebuilt from its options)
evaluate it; the task runs the candidate in its own killable sandbox with its limits.
So remote workers need the project installed, not the run folder.

- The task's data is shipped once: what the task's `prepare()` returns (made here, in
  the engine) is registered as a worker plugin, which the scheduler hands to every
  worker once, when it joins (restarted and late workers too); each evaluation gets it
  as `prepared`. (Data scattered with `client.scatter(broadcast=True)` would be lost
  when the workers holding it die, and the evaluations needing it cancelled rather
  than run again.) When `prepare()` returns None, workers load the data themselves.
- A worker that dies mid-evaluation (killed, out of memory, machine lost) is
  dask's business: the scheduler runs the candidate again elsewhere, once
  (`allowed_failures`); a second death fails it with KilledWorker, recorded here
  as a failed evaluation that says so. Nothing waits on a lost worker.
- Dask futures are mirrored into `concurrent.futures.Future`s, so the loop waits on
  them together with its LLM calls and its watchdog works as with local workers: its
  clock starts when a worker starts the evaluation (the worker logs an event that this
  pool subscribes to), not at submission; a re-run after a lost worker starts it again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import CancelledError, Future
from pathlib import Path

import dask
from distributed import Client, LocalCluster, WorkerPlugin, get_worker
from distributed.scheduler import KilledWorker

from evolve.evaluation.worker import evaluate_code
from evolve.scratch import make_scratch
from evolve.task import load_task

log = logging.getLogger("evolve")

ALLOWED_FAILURES = 1  # worker deaths during one evaluation before it counts as failed
STARTED_TOPIC = "evolve-evaluation-started"  # event: a worker starts evaluation KEY
RESTART_TIMEOUT_S = 120


def _failure(error: str) -> dict:
    return {"correct": False, "metrics": {}, "feedback": "", "error": error,
            "wall_seconds": 0.0}


class PreparedTask(WorkerPlugin):
    """What the task's `prepare()` returned, kept by every worker it is sent to."""

    def __init__(self, payload):
        self.payload = payload


def evaluate_on_worker(entry: str, options: Mapping, code: str, name: str,
                       results_dir: str | None, plugin: str | None) -> dict:
    """On a dask worker: evaluate_code with the prepared data of plugin `plugin`, if any."""
    worker = get_worker()
    worker.log_event(STARTED_TOPIC, worker.get_current_task())
    prepared = worker.plugins[plugin].payload if plugin else None
    return evaluate_code(entry, options, code, name, results_dir, prepared)


class DaskEvaluationPool:
    """Submit evaluations to a dask cluster; find and restart the ones past the watchdog."""

    def __init__(self, settings, entry: str, options: Mapping):
        self.watchdog_s = settings.watchdog_s
        self.entry = entry
        self.options = dict(options)
        self.cluster = self._scratch = None
        if settings.scheduler == "local":
            # the scheduler's and the workers' files and locks, removed at shutdown
            self._scratch = make_scratch("evolve-dask-")
            with dask.config.set({"temporary-directory": self._scratch.name}):
                self.cluster = LocalCluster(
                    n_workers=settings.n_jobs, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address="127.0.0.1:0", memory_limit=0,
                    local_directory=self._scratch.name)
        self.client = Client(self.cluster if self.cluster is not None else settings.scheduler)
        # the scheduler re-runs an evaluation whose worker died, ALLOWED_FAILURES times
        self.client.run_on_scheduler(
            lambda dask_scheduler, n=ALLOWED_FAILURES:
            setattr(dask_scheduler, "allowed_failures", n))
        self.plugin = None  # None: workers load the task's data themselves
        payload = load_task(entry, self.options).prepare()
        if payload is not None:
            self.plugin = f"evolve-prepared-{uuid.uuid4().hex[:8]}"
            self.client.register_plugin(PreparedTask(payload), name=self.plugin)
        self._running: dict[Future, object] = {}  # mirror -> dask future (kept alive)
        self._by_key: dict[str, Future] = {}  # dask key -> mirror
        self._started: dict[Future, float] = {}  # mirror -> when a worker started it
        self.client.subscribe_topic(STARTED_TOPIC, self._on_started)

    def submit(self, program_path: str, results_dir: str | None = None) -> Future:
        """Ship the program's text; the future's result is evaluate_candidate's dict."""
        path = Path(program_path)
        mirror: Future = Future()
        mirror.set_running_or_notify_cancel()
        remote = self.client.submit(evaluate_on_worker, self.entry, self.options,
                                    path.read_text(), path.name, results_dir, self.plugin,
                                    pure=False,
                                    key=f"evaluate-{path.stem}-{uuid.uuid4().hex[:8]}")
        self._running[mirror] = remote
        self._by_key[remote.key] = mirror
        remote.add_done_callback(lambda done: self._settle(mirror, done))
        return mirror

    def _on_started(self, event: tuple) -> None:
        """A worker started evaluation `key` (event = (timestamp, key)): start its clock."""
        mirror = self._by_key.get(event[1])
        if mirror is not None and mirror in self._running:
            self._started[mirror] = time.monotonic()

    def _settle(self, mirror: Future, remote) -> None:
        """Runs in dask's callback thread once the dask future is done."""
        try:
            result = remote.result()
        except KilledWorker as exc:
            result = _failure(
                f"evaluation lost its dask worker {exc.allowed_failures + 1} times (the "
                f"worker process died while evaluating it: killed, out of memory, or its "
                f"machine went away); last worker {exc.last_worker.address}")
        except CancelledError as exc:
            result = _failure(f"evaluation cancelled by dask (workers restarted, or the "
                              f"scheduler lost): {exc}")
        except Exception as exc:  # scheduler or network trouble: a failure, never a hang
            result = _failure(f"dask evaluation failed: {type(exc).__name__}: {exc}")
        self._running.pop(mirror, None)
        self._by_key.pop(remote.key, None)
        self._started.pop(mirror, None)
        if not mirror.done():
            mirror.set_result(result)

    def overdue(self) -> list[Future]:
        """Evaluations that started (on a worker) longer ago than the watchdog."""
        now = time.monotonic()
        return [f for f, t in list(self._started.items()) if now - t > self.watchdog_s]

    def restart(self) -> None:
        """Cancel every evaluation and restart every worker (through their nannies)."""
        running = list(self._running.values())
        self._started.clear()
        self.client.cancel(running)
        try:
            self.client.restart(timeout=RESTART_TIMEOUT_S)
        except Exception as exc:  # workers without nannies, a slow machine: go on
            log.warning("restarting the dask workers failed: %s", exc)

    def shutdown(self, kill: bool = False) -> None:
        """Close the client, and the local cluster if this pool started one (closing
        cancels whatever is still running, so `kill` needs nothing more)."""
        if self.plugin is not None:  # a shared scheduler should not keep our data
            try:
                self.client.unregister_worker_plugin(self.plugin)
            except Exception as exc:
                log.warning("removing the dask worker plugin failed: %s", exc)
        self.client.unsubscribe_topic(STARTED_TOPIC)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
            self._scratch.cleanup()
