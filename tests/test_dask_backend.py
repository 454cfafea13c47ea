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
    valid_reply,
    wait_for,
)
from llm_server import ScriptedLLMServer

from evolve.config import ConfigError, EvaluationSettings, from_dict
from evolve.dask_backend import DaskEvaluationPool
from evolve.evaluation import evaluate_candidate, prepared_data

DASK = ["evaluation.backend=dask", "evaluation.scheduler=local", "evaluation.n_jobs=2"]
ONE_AT_A_TIME = ["evolution.num_islands=1", "evolution.max_in_flight=1",
                 "evolution.patch_types={full: 1.0}", *NO_SPEED]

FAKE_TASK = '''
import os
import numpy as np

def prepare_task(task):
    with open(task["calls"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    return {"windows": np.arange(task["size"])}

def evaluate_task(program_path, task, results_dir=None, prepared=None):
    code = open(program_path).read()
    return {"correct": True, "error": None, "feedback": "", "metrics": {
        "code": code, "path": program_path, "worker": os.getpid(),
        "windows_sum": int(prepared["windows"].sum()), "payload_id": id(prepared)}}
'''
PLAIN_TASK = '''
def evaluate_task(program_path, task, results_dir):
    return {"correct": True, "error": None, "feedback": "", "metrics": {"results": results_dir}}
'''


def candidate(n: int, prologue: str, hang: bool = False) -> str:
    """A full-rewrite reply whose program runs `prologue` when the sandbox imports it."""
    return f"Variant {n}.\n\n```python\n{prologue}\n{full_block(n, hang=hang)}```\n"


def notes_itself(marker: Path) -> str:
    """Prologue: note (candidate pid, its parent = the evaluating worker)."""
    return ("import os\n"
            f"with open({str(marker)!r}, 'a') as _f:\n"
            "    _f.write(f'{os.getpid()} {os.getppid()}\\n')\n")


def started_twice(marker: Path) -> str:
    """Prologue: note the attempt and sleep 4 s (time to kill the worker meanwhile)."""
    return notes_itself(marker) + "import time\ntime.sleep(4)\n"


def kills_its_worker(marker: Path) -> str:
    """Prologue: note the attempt, then SIGKILL the worker evaluating this program."""
    return notes_itself(marker) + "import signal\nos.kill(os.getppid(), signal.SIGKILL)\n"


def attempts(marker: Path) -> list[tuple[int, int]]:
    """(candidate pid, worker pid) of each start of the program that writes `marker`."""
    if not marker.exists():
        return []
    return [tuple(map(int, line.split())) for line in marker.read_text().splitlines()]


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
    with pytest.raises(ConfigError, match="n_jobs"):
        EvaluationSettings(n_jobs=0)


# ---------------------------------------------------------------- the pool on its own


def test_code_and_prepared_data_are_shipped_once(tmp_path, monkeypatch):
    (tmp_path / "fake_task.py").write_text(FAKE_TASK)
    (tmp_path / "plain_task.py").write_text(PLAIN_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))  # before the workers start: they inherit it
    calls = tmp_path / "prepare-calls.txt"
    task = {"calls": str(calls), "size": 1000}

    # a task module without prepare_task: nothing prepared, its evaluator called as before
    assert prepared_data("plain_task:evaluate_task", task) is None
    plain = evaluate_candidate("plain_task:evaluate_task", "x.py", task, "out")
    assert plain["correct"] and plain["metrics"] == {"results": "out"}, plain

    settings = EvaluationSettings(n_jobs=2, backend="dask", scheduler="local")
    pool = DaskEvaluationPool(settings, "fake_task:evaluate_task", task)
    try:
        futures, codes = [], []
        for i in range(8):
            path = tmp_path / f"g{i:06d}.py"
            codes.append(f"VALUE = {i}\n")
            path.write_text(codes[-1])
            futures.append(pool.submit("fake_task:evaluate_task", str(path), task, None))
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


# ---------------------------------------------------------------- evolution on the cluster


def test_worker_killed_mid_evaluation_requeues_its_candidate(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    marker = tmp_path / "attempts.txt"
    killed: list[int] = []

    def kill_first_worker():
        if not wait_for(lambda: attempts(marker), timeout=90):
            return
        worker = attempts(marker)[0][1]
        ours = {p.pid for p in psutil.Process().children(recursive=True)}
        if worker != os.getpid() and worker in ours:  # a worker of this test's cluster
            os.kill(worker, signal.SIGKILL)
            killed.append(worker)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    with ScriptedLLMServer(scripted(candidate(1, started_twice(marker)))) as server:
        reason, run_dir = run_in_process(tmp_path, "requeue", [
            *DASK, *ONE_AT_A_TIME, "evolution.generations=3", model_override(server)])
    killer.join(timeout=5)
    assert reason == "finished"
    assert len(killed) == 1, "the evaluation's worker was not found"
    tries = attempts(marker)
    assert len(tries) == 2, tries  # killed mid-evaluation, then run once more
    assert tries[0][1] == killed[0] and tries[1][1] != killed[0]
    assert wait_for(lambda: gone(tries[0][0]), timeout=10)  # the candidate died with it
    rows = rows_by_generation(run_dir)
    assert sorted(rows) == [1, 2, 3]
    assert rows[1]["valid"] == 1 and rows[1]["score"] > 0, rows[1]["error"]
    assert "time.sleep(4)" in rows[1]["code"]
    assert rows[2]["valid"] == 1 and rows[3]["valid"] == 1


def test_candidate_that_kills_its_worker_twice_is_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    marker = tmp_path / "attempts.txt"
    with ScriptedLLMServer(scripted(candidate(2, kills_its_worker(marker)))) as server:
        reason, run_dir = run_in_process(tmp_path, "killer", [
            *DASK, *ONE_AT_A_TIME, "evolution.generations=2", model_override(server)])
    assert reason == "finished"
    tries = attempts(marker)
    assert len(tries) == 2, tries  # re-queued once, not more
    assert tries[0][1] != tries[1][1]  # on two different worker processes
    rows = rows_by_generation(run_dir)
    assert rows[1]["valid"] == 0
    assert "lost its dask worker 2 times" in rows[1]["error"]
    assert rows[2]["valid"] == 1  # the nannies restarted the workers; the run went on


def test_watchdog_restarts_the_dask_workers(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    marker = tmp_path / "attempts.txt"
    replies = iter([candidate(1, notes_itself(marker), hang=True), full_reply(460)])
    with ScriptedLLMServer(lambda request: next(replies)) as server:
        started = time.monotonic()
        reason, run_dir = run_in_process(tmp_path, "watchdog", [
            *DASK, *ONE_AT_A_TIME, "evolution.generations=2", model_override(server),
            "task.limits.timeout_s=120", "evaluation.watchdog_s=6"])
    assert reason == "finished"
    assert time.monotonic() - started < 90
    rows = rows_by_generation(run_dir)
    assert rows[1]["valid"] == 0 and "exceeded the watchdog (6 s)" in rows[1]["error"]
    assert rows[2]["valid"] == 1
    [(hung, worker)] = attempts(marker)
    assert wait_for(lambda: gone(hung) and gone(worker), timeout=10)  # killed, not spinning


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
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}  # "the project installed"
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
