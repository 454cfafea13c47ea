"""Tests for the SQLite run archive."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from evolve.database import Database
from evolve.records import LLMCall, Program

ROOT = Path(__file__).resolve().parents[1]


def prog(
    pid: str, generation: int = 1, island: int = 0, score: float | None = 0.5, **kw
) -> Program:
    valid = kw.pop("valid", score is not None)
    return Program(
        id=pid,
        code=kw.pop("code", f"# {pid}\n"),
        generation=generation,
        island=island,
        score=score,
        valid=valid,
        code_hash=kw.pop("code_hash", f"h-{pid}"),
        **kw,
    )


@pytest.fixture()
def db(tmp_path):
    with Database(tmp_path / "run.sqlite") as database:
        yield database


def test_program_round_trip_every_field(db):
    full = Program(
        id="a",
        code="def f():\n    return 'ü'\n",
        generation=3,
        island=2,
        parent_id="p",
        other_parent_id="q",
        patch_type="cross",
        model="gpt-x",
        valid=True,
        score=0.875,
        metrics={"combined_score": 0.875, "time_ms": 1.5, "nested": {"k": [1, 2]}, "n": None},
        error="warning",
        feedback="good balance",
        code_hash="abc",
        eval_seconds=2.25,
        created_at=1700000000.5,
        outcome="valid",
        idea="Replicate by water-filling",
        direction="replication",
        duplicate_of="z",
    )
    empty = Program(id="b", code="", generation=0, island=0)  # every optional left as None
    db.add_program(full)
    db.add_program(empty)
    assert db.programs() == [empty, full]  # by generation
    assert empty.score is None and empty.parent_id is None
    with pytest.raises(sqlite3.IntegrityError):
        db.add_program(full)


def test_a_run_stored_before_outcomes_and_ideas_opens_with_them_empty(tmp_path):
    """A database written with the first schema gains the new columns when opened."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE programs (id TEXT PRIMARY KEY, code TEXT NOT NULL, generation INTEGER "
            "NOT NULL, island INTEGER NOT NULL, parent_id TEXT, other_parent_id TEXT, patch_type "
            "TEXT NOT NULL, model TEXT, valid INTEGER NOT NULL, score REAL, metrics TEXT NOT "
            "NULL, error TEXT, feedback TEXT NOT NULL, code_hash TEXT NOT NULL, eval_seconds "
            "REAL NOT NULL, created_at REAL NOT NULL)")
        conn.execute("INSERT INTO programs VALUES ('seed', 'x = 1', 0, 0, NULL, NULL, 'initial', "
                     "NULL, 1, 0.5, '{}', NULL, '', 'h', 1.0, 2.0)")
    conn.close()
    with Database(path) as db:
        (old,) = db.programs()
        assert (old.id, old.score, old.outcome, old.idea, old.duplicate_of) == (
            "seed", 0.5, "", "", None)
        db.add_program(prog("g1", outcome="duplicate", duplicate_of="seed", idea="same"))
        assert db.programs()[1].duplicate_of == "seed"


def test_llm_call_round_trip_and_cost(db):
    ok = LLMCall(1, "m1", 0.7, "sys", "user", "reply", 10, 20, 0.5, 1.25, 2, None, 123.0)
    failed = LLMCall(2, "m2", 1.0, "sys", "user", None, error="timeout", cost=0.25)
    db.add_llm_call(ok)
    db.add_llm_call(failed)
    assert db.llm_calls() == [ok, failed]
    assert db.llm_calls(generation=2) == [failed]
    assert db.llm_calls(generation=9) == []
    assert db.total_cost() == pytest.approx(0.75)
    assert db.cost_by_generation() == {1: 0.5, 2: 0.25}
    usage = db.llm_usage()
    assert usage["m1"] == {
        "calls": 1, "failures": 0, "prompt_tokens": 10, "completion_tokens": 20, "cost": 0.5
    }  # fmt: skip
    assert usage["m2"]["failures"] == 1 and usage["m2"]["cost"] == 0.25


def test_a_run_stored_before_call_purposes_opens_with_mutation_calls(tmp_path):
    """An llm_calls table without `purpose` gains it; its calls count as mutations."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE llm_calls (id INTEGER PRIMARY KEY AUTOINCREMENT, generation INTEGER "
            "NOT NULL, model TEXT NOT NULL, temperature REAL NOT NULL, system TEXT NOT NULL, "
            "user TEXT NOT NULL, reply TEXT, prompt_tokens INTEGER NOT NULL, completion_tokens "
            "INTEGER NOT NULL, cost REAL NOT NULL, latency_s REAL NOT NULL, attempts INTEGER "
            "NOT NULL, error TEXT, created_at REAL NOT NULL)")
        conn.execute("INSERT INTO llm_calls VALUES (NULL, 3, 'm', 0.5, 's', 'u', 'r', 1, 2, "
                     "0.1, 0.2, 1, NULL, 5.0)")
    conn.close()
    with Database(path) as db:
        (old,) = db.llm_calls()
        assert (old.generation, old.reply, old.purpose) == (3, "r", "mutation")
        summary = LLMCall(4, "m", 0.5, "s", "u", "advice", cost=0.3, purpose="summary")
        db.add_llm_call(summary)
        assert db.llm_calls(4) == [summary]
        assert db.total_cost() == pytest.approx(0.4)


def test_empty_database(db):
    assert db.total_cost() == 0.0
    assert db.completed_generations() == set()
    assert db.programs() == []


def test_wal_mode_and_reopen(tmp_path):
    path = tmp_path / "run.sqlite"
    with Database(path) as db:
        db.add_program(prog("a"))
        db.set_meta("config", {"islands": 4, "models": ["a", "b"]})
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with Database(path) as db:  # reopening keeps data and does not recreate tables
        assert len(db.programs()) == 1
        assert db.get_meta("config") == {"islands": 4, "models": ["a", "b"]}


def test_meta(db):
    assert db.get_meta("missing") is None
    assert db.get_meta("missing", 7) == 7
    db.set_meta("k", 1)
    db.set_meta("k", [1, "two", None])
    assert db.get_meta("k") == [1, "two", None]


def test_programs_order(db):
    db.add_program(prog("g2", generation=2, island=1))
    db.add_program(prog("g0b", generation=0, island=0, score=None))
    db.add_program(prog("g0a", generation=0, island=1))
    db.add_program(prog("g1", generation=1, island=1, score=None))
    assert [p.id for p in db.programs()] == ["g0b", "g0a", "g1", "g2"]


def test_completed_generations_ignores_migrants(db):
    db.add_program(prog("seed", generation=0))
    db.add_program(prog("c1", generation=1, score=None))
    db.add_program(prog("c3", generation=3))
    db.add_program(prog("m4", generation=4, island=1, patch_type="migrant"))
    assert db.completed_generations() == {1, 3}


def test_threads_share_connection(db):
    def work(t: int) -> None:
        for i in range(50):
            db.add_program(prog(f"t{t}-{i}", generation=i, island=t))
            db.completed_generations()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(db.programs()) == 200


WRITER = textwrap.dedent(
    """
    import sys
    from evolve.database import Database
    from evolve.records import LLMCall, Program

    db = Database(sys.argv[1])
    i = 0
    while True:
        code = f"# program {i}\\n" + "x = 1\\n" * 5000
        db.add_program(Program(id=f"p{i}", code=code, generation=i, island=i % 3,
                               valid=True, score=i / 1000, metrics={"i": i, "pad": "y" * 500},
                               code_hash=f"h{i}"))
        db.add_llm_call(LLMCall(i, "m", 0.5, "s", "u" * 2000, "r"))
        db.set_meta("last", i)
        i += 1
    """
)


def test_sigkill_while_writing_leaves_whole_rows(tmp_path):
    path = tmp_path / "run.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if path.exists():
                try:
                    with Database(path) as probe:
                        if len(probe.completed_generations()) >= 50:
                            break
                except sqlite3.OperationalError:
                    pass
            time.sleep(0.02)
        else:
            pytest.fail("writer made no progress")
        time.sleep(0.05)  # kill it somewhere in the middle of a write
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    with Database(path) as db:
        programs = db.programs()
        assert len(programs) >= 50
        assert [p.generation for p in programs] == list(range(len(programs)))
        for p in programs:
            i = p.generation
            assert p.id == f"p{i}" and p.code_hash == f"h{i}"
            assert p.code == f"# program {i}\n" + "x = 1\n" * 5000
            assert p.metrics == {"i": i, "pad": "y" * 500}
            assert p.score == pytest.approx(i / 1000)
        calls = db.llm_calls()
        assert len(calls) in (len(programs) - 1, len(programs))
        assert all(c.user == "u" * 2000 and c.reply == "r" for c in calls)
        assert db.get_meta("last") in (len(programs) - 2, len(programs) - 1)
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()


def test_ten_thousand_programs_stay_fast(db):
    metrics = {"combined_score": 0.0, "balancedness_gpu": 0.9, "time_ms": 3.0}
    start = time.perf_counter()
    for i in range(10_000):
        db.add_program(
            prog(f"p{i}", generation=i, island=i % 4, score=(i * 7919 % 10_007) / 10_007,
                 metrics=metrics, code="x = 1\n" * 50)
        )  # fmt: skip
    insert_ms = (time.perf_counter() - start) * 1000 / 10_000

    timings = {}
    start = time.perf_counter()
    for _ in range(100):
        db.completed_generations()
    timings["completed_generations"] = (time.perf_counter() - start) * 10
    start = time.perf_counter()
    everything = db.programs()
    timings["programs() all"] = (time.perf_counter() - start) * 1000
    print(f"\nadd_program {insert_ms:.3f} ms/row; " + ", ".join(
        f"{k} {v:.3f} ms" for k, v in timings.items()))  # fmt: skip

    assert len(everything) == 10_000
    # Generous bounds: the machine is shared and noisy.
    assert insert_ms < 50
