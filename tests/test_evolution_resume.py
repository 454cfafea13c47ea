"""A run killed with SIGKILL mid-way and resumed ends exactly like an uninterrupted run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import pandas as pd
import psutil
from evo_helpers import (
    KEY_ENV,
    NO_SPEED,
    PROJECT_ROOT,
    children,
    completed_generations,
    connect_ro,
    deterministic_responder,
    llm_calls,
    model_override,
    programs,
    run_args,
    run_evo,
    run_in_process,
    subprocess_env,
    wait_for,
)
from llm_server import Reply, ScriptedLLMServer

GENERATIONS = 8
IN_FLIGHT = 2
OVERRIDES = [f"evolution.generations={GENERATIONS}", "evolution.num_islands=2",
             f"evolution.max_in_flight={IN_FLIGHT}", "evolution.migration_interval=3",
             "evolution.seed=5", *NO_SPEED]


def slow_responder(request):
    """Deterministic by content, a little slow so that a kill lands mid-run."""
    return Reply(deterministic_responder(request), delay_s=0.3)


def sequence(run_dir):
    return [(p["generation"], p["parent_id"], p["patch_type"], p["code_hash"], p["valid"])
            for p in programs(run_dir)]


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the run, its process group and every descendant (pool workers, sandboxes)."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in tree:
        with contextlib.suppress(psutil.Error):
            child.kill()
    proc.wait(timeout=10)
    psutil.wait_procs(tree, timeout=10)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")

    with ScriptedLLMServer(slow_responder) as server:
        reason, reference = run_in_process(tmp_path / "ref", "ref",
                                           [*OVERRIDES, model_override(server)])
        assert reason == "finished"
    expected = sequence(reference)
    assert sorted(p["generation"] for p in children(reference)) == list(
        range(1, GENERATIONS + 1))

    root = tmp_path / "cli"
    run_dir = root / "run"
    db_path = run_dir / "evolution.db"
    env = subprocess_env(**{KEY_ENV: "sk-test"})
    with ScriptedLLMServer(slow_responder) as server:
        args = run_args(root, "run", [*OVERRIDES, model_override(server), "report_every=1"])
        with open(tmp_path / "first.out", "w") as out, open(tmp_path / "first.err", "w") as err:
            proc = subprocess.Popen([sys.executable, "run_evo.py", *args], cwd=PROJECT_ROOT,
                                    env=env, stdout=out, stderr=err, start_new_session=True)
            try:
                started = wait_for(lambda: len(completed_generations(db_path)) >= 3
                                   or proc.poll() is not None, timeout=150, interval=0.05)
                assert started and proc.poll() is None, (tmp_path / "first.err").read_text()
            finally:
                kill_tree(proc)
        assert proc.returncode == -signal.SIGKILL
        before = completed_generations(db_path)
        assert 3 <= len(before) < GENERATIONS, before
        requests_before = len(server.requests)

        conn = connect_ro(db_path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()

        done = run_evo(["--resume", str(run_dir)], env=env)
        assert done.returncode == 0, done.stderr
        assert "finished" in done.stdout
        total_requests = len(server.requests)

    # every generation exactly once
    own = children(run_dir)
    assert sorted(p["generation"] for p in own) == list(range(1, GENERATIONS + 1))
    # no paid work repeated beyond the calls that were in flight at the kill
    assert requests_before < total_requests <= GENERATIONS + IN_FLIGHT
    answered = [c for c in llm_calls(run_dir) if c["reply"] is not None]
    assert sorted(c["generation"] for c in answered) == list(range(1, GENERATIONS + 1))
    # the database survived the kill
    conn = connect_ro(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    # the same choices and the same programs as without the interruption
    assert sequence(run_dir) == expected
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert set(board["id"]) == {p["id"] for p in programs(run_dir)
                                if p["valid"] and p["patch_type"] != "migrant"}
