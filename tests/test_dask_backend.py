"""The dask.distributed evaluation backend, on a real LocalCluster bound to 127.0.0.1.

Evolution runs use the tiny task and the scripted OpenAI-compatible server of the loop's
tests (tests/evo_helpers.py); worker processes are killed for real with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from distributed import Client
from evo_helpers import (
    KEY_ENV,
    NO_SPEED,
    PROJECT_ROOT,
    deterministic_responder,
    full_block,
    full_reply,
    model_override,
    programs,
    run_in_process,
    stray_candidates,
    valid_reply,
    wait_for,
)
from llm_server import ScriptedLLMServer

from evolve.config import ConfigError, EvaluationSettings, from_dict
from evolve.evaluation import make_pool
from evolve.evaluation.dask_pool import DaskEvaluationPool
from evolve.evaluation.worker import evaluate_candidate
from evolve.task import load_task

DASK = ["evaluation.backend=dask", "evaluation.scheduler=local", "evaluation.n_jobs=2"]
ONE_AT_A_TIME = ["evolution.num_islands=1", "evolution.max_in_flight=1",
                 "evolution.patch_types={full: 1.0}", *NO_SPEED]

FAKE_TASK = '''
import os
import numpy as np

class FakeTask:
    def __init__(self, options):
        self.options = options

    def prepare(self):
        with open(self.options["calls"], "a") as f:
            f.write(f"{os.getpid()}\\n")
        return {"windows": np.arange(self.options["size"])}

    def evaluate(self, program_path, results_dir=None, prepared=None):
        code = open(program_path).read()
        return {"correct": True, "error": None, "feedback": "", "metrics": {
            "code": code, "path": program_path, "worker": os.getpid(),
            "windows_sum": int(prepared["windows"].sum()), "payload_id": id(prepared)}}
'''
PLAIN_TASK = '''
class PlainTask:
    def __init__(self, options):
        pass

    def prepare(self):
        return None

    def evaluate(self, program_path, results_dir=None, prepared=None):
        return {"correct": True, "error": None, "feedback": "",
                "metrics": {"results": results_dir, "nested": {"dropped": 1}}}
'''


# The EPLB evaluator behind a hook for these tests: a program that names an attempts file
# gets each evaluation attempt noted there (the worker's pid), then the action it asks for,
# in the trusted worker; the candidate itself is jailed and could do neither.
DISRUPTIVE_TASK = '''
import os
import re
import signal
import time

from eplb.task import EplbTask


class DisruptiveTask(EplbTask):
    def evaluate(self, program_path, results_dir=None, prepared=None):
        found = re.search(r"# attempts: (\\S+) then: (\\w+)", open(program_path).read())
        if found:
            with open(found[1], "a") as handle:
                handle.write(f"{os.getpid()}\\n")
            if found[2] == "sleep":
                time.sleep(4)  # time to kill the worker meanwhile
            elif found[2] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
        return super().evaluate(program_path, results_dir, prepared)
'''


def disruptive_task(tmp_path: Path, monkeypatch) -> list[str]:
    """Install DISRUPTIVE_TASK where the workers (started later) import it from."""
    (tmp_path / "disruptive_task.py").write_text(DISRUPTIVE_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    return ["task.engine.entry=disruptive_task:DisruptiveTask"]


def candidate(n: int, marker: Path, action: str, hang: bool = False) -> str:
    """A full-rewrite reply whose evaluation is noted in `marker`, then does `action`."""
    return (f"Variant {n}.\n\n```python\n# attempts: {marker} then: {action}\n"
            f"{full_block(n, hang=hang)}```\n")


def attempts(marker: Path) -> list[int]:
    """The worker pid of each evaluation attempt noted in `marker`."""
    return [int(line) for line in marker.read_text().split()] if marker.exists() else []


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def rows_by_generation(run_dir: Path) -> dict[int, dict]:
    return {p["generation"]: p for p in programs(run_dir)
            if p["generation"] >= 1 and p["patch_type"] != "migrant"}


def scripted(first: str):
    """Responder: `first` for the first request, then distinct valid children."""
    served = []

    def respond(request):
        served.append(request)
        return first if len(served) == 1 else valid_reply(request, 500 + len(served))

    return respond


# ---------------------------------------------------------------- configuration


def test_backend_setting_is_checked():
    assert EvaluationSettings().backend == "local"
    with pytest.raises(ConfigError, match="'local', 'dask'"):
        from_dict(EvaluationSettings, {"backend": "ray"}, "evaluation")


# ---------------------------------------------------------------- the pool on its own


def test_code_and_prepared_data_are_shipped_once(tmp_path, monkeypatch):
    (tmp_path / "fake_task.py").write_text(FAKE_TASK)
    (tmp_path / "plain_task.py").write_text(PLAIN_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))  # before the workers start: they inherit it
    calls = tmp_path / "prepare-calls.txt"
    task = {"calls": str(calls), "size": 1000}

    # a task that prepares nothing; the engine keeps its flat metrics only
    assert load_task("plain_task:PlainTask", task).prepare() is None
    plain = evaluate_candidate("plain_task:PlainTask", task, "x.py", "out")
    assert plain["correct"] and plain["metrics"] == {"results": "out"}, plain

    settings = EvaluationSettings(n_jobs=2, backend="dask", scheduler="local")
    pool = DaskEvaluationPool(settings, "fake_task:FakeTask", task)
    try:
        futures, codes = [], []
        for i in range(8):
            path = tmp_path / f"g{i:06d}.py"
            codes.append(f"VALUE = {i}\n")
            path.write_text(codes[-1])
            futures.append(pool.submit(str(path)))
            path.unlink()  # the text was shipped: the local file is no longer needed
        results = [f.result(timeout=60)["metrics"] for f in futures]
    finally:
        pool.shutdown()
    assert calls.read_text().split() == [str(os.getpid())]  # prepared once, by the engine
    payloads = {}
    for i, metrics in enumerate(results):
        assert metrics["code"] == codes[i]
        assert Path(metrics["path"]).name == f"g{i:06d}.py"
        assert Path(metrics["path"]).parent != tmp_path
        assert not Path(metrics["path"]).exists()  # the worker's temporary copy is gone
        assert metrics["windows_sum"] == sum(range(1000))
        payloads.setdefault(metrics["worker"], set()).add(metrics["payload_id"])
    assert os.getpid() not in payloads
    # every evaluation on a worker saw the same object: shipped once, not per candidate
    assert all(len(ids) == 1 for ids in payloads.values()), payloads
    assert sum(m["worker"] in payloads for m in results) == 8


def test_a_local_cluster_leaves_nothing_in_the_temp_dir(tmp_path, monkeypatch):
    """The workers' files and dask's locks live in the pool's own scratch folder, which
    goes with the pool (dask alone would leave dask-scratch-space/ and its locks)."""
    (tmp_path / "plain_task.py").write_text(PLAIN_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # this process and the workers it starts
    monkeypatch.setattr(tempfile, "tempdir", None)
    pool = DaskEvaluationPool(EvaluationSettings(n_jobs=1, backend="dask", scheduler="local"),
                              "plain_task:PlainTask", {})
    try:
        (tmp_path / "x.py").write_text("VALUE = 1\n")
        assert pool.submit(str(tmp_path / "x.py")).result(timeout=60)["correct"]
        assert [p.name.split("-")[:3] for p in temp.iterdir()] == [
            ["evolve", "dask", str(os.getpid())]]
    finally:
        pool.shutdown()
    assert list(temp.iterdir()) == []


# ---------------------------------------------------------------- evolution on the cluster


def test_worker_killed_mid_evaluation_requeues_its_candidate(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    marker = tmp_path / "attempts.txt"
    killed: list[int] = []

    def kill_first_worker():
        if not wait_for(lambda: attempts(marker), timeout=90):
            return
        worker = attempts(marker)[0]
        ours = {p.pid for p in psutil.Process().children(recursive=True)}
        if worker != os.getpid() and worker in ours:  # a worker of this test's cluster
            os.kill(worker, signal.SIGKILL)
            killed.append(worker)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    with ScriptedLLMServer(scripted(candidate(1, marker, "sleep"))) as server:
        reason, run_dir = run_in_process(tmp_path, "requeue", [
            *DASK, *ONE_AT_A_TIME, "evolution.generations=3", model_override(server),
            *disruptive_task(tmp_path, monkeypatch)])
    killer.join(timeout=5)
    assert reason == "finished"
    assert len(killed) == 1, "the evaluation's worker was not found"
    tries = attempts(marker)
    assert len(tries) == 2, tries  # killed mid-evaluation, then run once more
    assert tries[0] == killed[0] and tries[1] != killed[0]
    # none outlived its worker (an evaluation the closing cluster still runs is no leak)
    assert wait_for(lambda: not stray_candidates(running=False), timeout=30), \
        stray_candidates(running=False)
    rows = rows_by_generation(run_dir)
    assert sorted(rows) == [1, 2, 3]
    assert rows[1]["valid"] == 1 and rows[1]["score"] > 0, rows[1]["error"]
    assert "then: sleep" in rows[1]["code"]
    assert rows[2]["valid"] == 1 and rows[3]["valid"] == 1


def test_evaluation_that_kills_its_worker_twice_is_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    marker = tmp_path / "attempts.txt"
    with ScriptedLLMServer(scripted(candidate(2, marker, "kill"))) as server:
        reason, run_dir = run_in_process(tmp_path, "killer", [
            *DASK, *ONE_AT_A_TIME, "evolution.generations=2", model_override(server),
            *disruptive_task(tmp_path, monkeypatch)])
    assert reason == "finished"
    tries = attempts(marker)
    assert len(tries) == 2, tries  # re-queued once, not more
    assert tries[0] != tries[1]  # on two different worker processes
    rows = rows_by_generation(run_dir)
    assert rows[1]["valid"] == 0
    assert "lost its dask worker 2 times" in rows[1]["error"]
    assert rows[2]["valid"] == 1  # the nannies restarted the workers; the run went on


def test_watchdog_restarts_the_dask_workers(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    marker = tmp_path / "attempts.txt"
    replies = iter([candidate(1, marker, "run", hang=True), full_reply(460)])
    with ScriptedLLMServer(lambda request: next(replies)) as server:
        started = time.monotonic()
        reason, run_dir = run_in_process(tmp_path, "watchdog", [
            *DASK, *ONE_AT_A_TIME, "evolution.generations=2", model_override(server),
            "task.limits.timeout_s=300", "task.limits.call_timeout_s=300",
            "evaluation.watchdog_s=20", *disruptive_task(tmp_path, monkeypatch)])
    assert reason == "finished"
    assert time.monotonic() - started < 300  # the watchdog, not the task's limit, ended it
    rows = rows_by_generation(run_dir)
    assert rows[1]["valid"] == 0 and "exceeded the watchdog (20 s)" in rows[1]["error"]
    assert rows[2]["valid"] == 1
    [worker] = attempts(marker)
    # the worker was restarted, and its hung candidate died with it: nothing spins on
    assert wait_for(lambda: gone(worker) and not stray_candidates(), timeout=30)


def test_dask_run_matches_local_run(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    overrides = ["evolution.generations=6", "evolution.num_islands=2",
                 "evolution.max_in_flight=3", "evolution.migration_interval=3",
                 "evolution.seed=11", "evolution.patch_types={diff: 0.5, full: 0.3, cross: 0.2}",
                 *NO_SPEED]
    results = {}
    for backend in ("local", "dask"):
        with ScriptedLLMServer(deterministic_responder) as server:
                reason, run_dir = run_in_process(tmp_path, backend, [
                *overrides, f"evaluation.backend={backend}", model_override(server)])
        assert reason == "finished"
        results[backend] = [(p["generation"], p["island"], p["parent_id"], p["patch_type"],
                             p["code_hash"], p["valid"], p["score"])
                            for p in programs(run_dir)]
    local, dask = results["local"], results["dask"]
    assert len([r for r in local if r[0] >= 1 and r[3] != "migrant"]) == 6
    assert any(r[5] == 1 and r[0] >= 1 for r in local) and any(r[5] == 0 for r in local)
    assert dask == local


@contextlib.contextmanager
def dask_processes(tmp_path: Path):
    """`dask scheduler` and `dask worker` processes on 127.0.0.1, as the README starts them."""
    info = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT),  # "the project installed"
           "DASK_TEMPORARY_DIRECTORY": str(tmp_path)}  # their files: not in the temp dir
    common = dict(cwd=tmp_path, env=env, start_new_session=True,
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dask = [sys.executable, "-m", "dask"]
    started = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                 "--dashboard-address", "127.0.0.1:0",
                                 "--scheduler-file", str(info)], **common)]
    try:
        assert wait_for(lambda: info.exists() and info.read_text().strip(), timeout=60)
        address = json.loads(info.read_text())["address"]
        started.append(subprocess.Popen([*dask, "worker", address, "--nworkers", "2",
                                         "--nthreads", "1", "--host", "127.0.0.1"], **common))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(started):  # the groups of the processes started here
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_run_on_a_separately_started_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with dask_processes(tmp_path) as address, \
            ScriptedLLMServer(scripted(full_reply(470))) as server:
        reason, run_dir = run_in_process(tmp_path, "remote", [
            "evaluation.backend=dask", f"evaluation.scheduler={address}", *ONE_AT_A_TIME,
            "evolution.generations=2", model_override(server)])
        with Client(address, timeout=30) as client:
            # the run asked the scheduler to re-run a candidate whose worker dies only once
            allowed = client.run_on_scheduler(lambda dask_scheduler:
                                              dask_scheduler.allowed_failures)
            assert client.run_on_scheduler(lambda dask_scheduler:
                                           [n for n in dask_scheduler.worker_plugins
                                                 if n.startswith("evolve-")]) == []
    assert reason == "finished"
    assert allowed == 1
    rows = rows_by_generation(run_dir)
    assert rows[1]["valid"] == 1 and rows[2]["valid"] == 1, rows


# ---------------------------------------------------------------- secrets

ENVIRON_TASK = '''
class EnvironTask:
    def __init__(self, options):
        pass

    def prepare(self):
        return None

    def evaluate(self, program_path, results_dir=None, prepared=None):
        with open("/proc/self/environ", "rb") as handle:
            environ = handle.read().decode("utf-8", "replace")
        return {"correct": True, "error": None, "feedback": "", "metrics": {"environ": environ}}
'''


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_evaluation_workers_start_without_secrets(tmp_path, monkeypatch, backend):
    """Not even in the environment they were started with (/proc/<pid>/environ)."""
    (tmp_path / "environ_task.py").write_text(ENVIRON_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-worker-test")
    monkeypatch.setenv("HF_TOKEN", "hf-worker-test")
    (tmp_path / "x.py").write_text("VALUE = 1\n")
    settings = EvaluationSettings(n_jobs=1, backend=backend, scheduler="local")
    pool = make_pool(settings, "environ_task:EnvironTask", {})
    try:
        assert "OPENAI_API_KEY" not in os.environ and "HF_TOKEN" not in os.environ
        result = pool.submit(str(tmp_path / "x.py")).result(timeout=120)
    finally:
        pool.shutdown()
    environ = result["metrics"]["environ"]
    assert "PATH=" in environ  # the worker's real environment was read
    assert "worker-test" not in environ and "OPENAI_API_KEY" not in environ
