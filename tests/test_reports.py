"""Tests for the report files written from a run's database."""

from __future__ import annotations

import json
import math
import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from evolve.database import Database
from evolve.records import LLMCall, Program
from evolve.reports import atomic_write, pareto_front, write_reports


def prog(pid, generation, score, island=0, parent_id=None, model="m1", **kw) -> Program:
    metrics = kw.pop("metrics", None)
    if metrics is None and score is not None:
        metrics = {
            "combined_score": score,
            "balancedness_gpu": score,
            "balancedness_slot": score / 2,
            "time_ms": 10 * score,
            "migration": 0.1,
        }
    return Program(
        id=pid,
        code=f"# program {pid}\n",
        generation=generation,
        island=island,
        parent_id=parent_id,
        patch_type=kw.pop("patch_type", "initial" if generation == 0 else "diff"),
        model=None if generation == 0 else model,
        valid=score is not None,
        score=score,
        metrics=metrics or {},
        code_hash=f"h-{pid}",
        **kw,
    )


COLUMNS = ("balancedness_gpu", "balancedness_slot", "time_ms", "migration")
PARETO = ("balancedness_gpu", "time_ms")
SHOWN = {"columns": COLUMNS, "pareto": PARETO}


def call(generation, model="m1", reply="ok", cost=0.01) -> LLMCall:
    return LLMCall(generation, model, 0.7, "sys", "user", reply, 100, 50, cost)


@pytest.fixture()
def db(tmp_path):
    with Database(tmp_path / "run.sqlite") as database:
        database.add_program(prog("seed", 0, 0.5))
        database.add_program(prog("g1", 1, 0.6, parent_id="seed"))  # improvement by m1
        database.add_program(prog("g2", 2, None, parent_id="g1", model="m2"))  # invalid
        database.add_program(prog("g3", 3, 0.4, parent_id="g1", model="m2"))  # worse
        database.add_program(prog("g4", 4, 0.9, island=1, parent_id="seed"))  # improvement
        database.add_program(
            prog("mig", 4, 0.9, island=0, parent_id="g4", patch_type="migrant", model=None)
        )
        database.add_llm_call(call(1))
        database.add_llm_call(call(2, "m2"))
        database.add_llm_call(call(3, "m2", reply=None, cost=0.0))  # a failed request...
        database.add_llm_call(call(3, "m2", cost=0.02))  # ...then its retry
        database.add_llm_call(call(4))
        yield database


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def test_pareto_front_hand_made():
    rows = [
        {"id": "a", "b": 0.9, "t": 5.0},  # front: best balance
        {"id": "b", "b": 0.8, "t": 2.0},  # front
        {"id": "c", "b": 0.7, "t": 3.0},  # dominated by b
        {"id": "d", "b": 0.5, "t": 1.0},  # front: fastest
        {"id": "e", "b": 0.9, "t": 6.0},  # dominated by a (same balance, slower)
        {"id": "f", "b": 0.8, "t": 2.0},  # equal to b: kept too
        {"id": "g", "b": None, "t": 0.1},  # missing value: ignored
        {"id": "h", "b": math.nan, "t": 0.1},  # NaN: ignored
        {"id": "i", "b": 0.4, "t": 1.0},  # dominated by d (same time, less balanced)
    ]
    front = pareto_front(rows, maximize="b", minimize="t")
    assert [r["id"] for r in front] == ["a", "b", "d", "f"]
    assert pareto_front([], "b", "t") == []


def test_pareto_front_matches_brute_force():
    import random

    rng = random.Random(0)
    rows = [{"x": rng.randint(0, 8), "y": rng.randint(0, 8)} for _ in range(200)]

    def dominated(r):
        return any(
            o["x"] >= r["x"] and o["y"] <= r["y"] and (o["x"] > r["x"] or o["y"] < r["y"])
            for o in rows
        )

    assert pareto_front(rows, "x", "y") == [r for r in rows if not dominated(r)]


def test_run_reports(db, tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    write_reports(db, run_dir, **SHOWN)

    board = read(run_dir / "leaderboard.csv")
    assert list(board["id"]) == ["g4", "g1", "seed", "g3"]  # valid, non-migrant, score desc
    assert list(board["rank"]) == [1, 2, 3, 4]
    assert list(board.columns[:4]) == ["rank", "id", "score", "balancedness_gpu"]
    assert board.loc[0, "cost"] == pytest.approx(0.01)
    assert board.loc[board["id"] == "g3", "cost"].item() == pytest.approx(0.02)
    assert board.loc[0, "time_ms"] == pytest.approx(9.0)

    gens = read(run_dir / "generations.csv")
    assert list(gens["generation"]) == [0, 1, 2, 3, 4]
    assert list(gens["best_so_far"]) == pytest.approx([0.5, 0.6, 0.6, 0.6, 0.9])
    assert list(gens["valid"]) == [1, 1, 0, 1, 1]
    assert list(gens["valid_rate_so_far"]) == pytest.approx([1, 1, 2 / 3, 3 / 4, 4 / 5])
    assert list(gens["cost_so_far"]) == pytest.approx([0, 0.01, 0.02, 0.04, 0.05])
    assert list(gens["mean_so_far"]) == pytest.approx([0.5, 0.55, 0.55, 0.5, 0.6])
    assert math.isnan(gens.loc[2, "child_score"])

    llm = read(run_dir / "llm.csv").set_index("model")
    assert llm.loc["m1", "calls"] == 2 and llm.loc["m2", "calls"] == 3
    assert llm.loc["m1", "failures"] == 0 and llm.loc["m2", "failures"] == 1
    assert llm.loc["m2", "prompt_tokens"] == 300 and llm.loc["m2", "completion_tokens"] == 150
    assert llm.loc["m2", "cost"] == pytest.approx(0.03)
    assert llm.loc["m1", "improvements"] == 2 and llm.loc["m2", "improvements"] == 0
    assert llm.loc["m1", "children"] == 2 and llm.loc["m2", "children"] == 2

    pareto = read(run_dir / "pareto.csv")
    # balance == score and time == 10 * score here, so every point is on the front.
    assert sorted(pareto["id"]) == ["g1", "g3", "g4", "seed"]

    assert (run_dir / "best" / "program.py").read_text() == "# program g4\n"
    best = json.loads((run_dir / "best" / "metrics.json").read_text())
    assert best["id"] == "g4" and best["score"] == 0.9
    assert best["metrics"]["balancedness_gpu"] == 0.9

    assert (run_dir / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leftovers = [p.name for p in run_dir.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_pareto_csv_drops_dominated(tmp_path):
    with Database(tmp_path / "run.sqlite") as db:
        db.add_program(prog("fast", 1, 0.5, metrics={"balancedness_gpu": 0.5, "time_ms": 1.0}))
        db.add_program(prog("slow", 2, 0.6, metrics={"balancedness_gpu": 0.4, "time_ms": 5.0}))
        db.add_program(prog("good", 3, 0.7, metrics={"balancedness_gpu": 0.9, "time_ms": 4.0}))
        write_reports(db, tmp_path / "run", **SHOWN)
        write_reports(db, tmp_path / "plain")
    assert sorted(read(tmp_path / "run" / "pareto.csv")["id"]) == ["fast", "good"]
    # a task with no Pareto axes and no report columns: no pareto.csv, the engine's columns
    assert not (tmp_path / "plain" / "pareto.csv").exists()
    assert list(read(tmp_path / "plain" / "leaderboard.csv").columns[:4]) == [
        "rank", "id", "score", "generation"]


def test_empty_and_single_point_runs(tmp_path):
    with Database(tmp_path / "run.sqlite") as db:
        write_reports(db, tmp_path / "empty")
        assert read(tmp_path / "empty" / "leaderboard.csv").empty
        assert list(read(tmp_path / "empty" / "llm.csv").columns)[0] == "model"
        assert not (tmp_path / "empty" / "best").exists()
        db.add_program(prog("seed", 0, 0.5))
        write_reports(db, tmp_path / "one")
        assert not (tmp_path / "one" / "plot.png").exists()  # < 2 points: no plot
        assert (tmp_path / "one" / "best" / "program.py").exists()


def test_results_root_upsert(db, tmp_path):
    results = tmp_path / "results"
    write_reports(db, tmp_path / "runs" / "r1", results_root=results, run_name="r1", **SHOWN)
    table = read(results / "leaderboard.csv")
    assert list(table["run"]) == ["r1"]
    row = table.iloc[0]
    assert row["best_score"] == pytest.approx(0.9)
    assert row["best_balancedness_gpu"] == pytest.approx(0.9)
    assert row["best_time_ms"] == pytest.approx(9.0)
    assert row["generations"] == 4
    assert row["valid_rate"] == pytest.approx(4 / 5)
    assert row["cost"] == pytest.approx(0.05)

    with Database(tmp_path / "other.sqlite") as other:
        other.add_program(prog("x", 0, 0.3))
        write_reports(other, tmp_path / "runs" / "r2", results_root=results, run_name="r2")
    table = read(results / "leaderboard.csv")
    assert list(table["run"]) == ["r1", "r2"]

    db.add_program(prog("g5", 5, 0.95, parent_id="g4"))
    write_reports(db, tmp_path / "runs" / "r1", results_root=results, run_name="r1", **SHOWN)
    table = read(results / "leaderboard.csv")
    assert sorted(table["run"]) == ["r1", "r2"]  # updated, not duplicated
    assert table.set_index("run").loc["r1", "best_score"] == pytest.approx(0.95)
    assert table.set_index("run").loc["r1", "generations"] == 5
    assert [p.name for p in results.iterdir() if p.name.endswith(".tmp")] == []


def _report_worker(args: tuple[str, str, str]) -> None:
    db_path, results, name = args
    with Database(db_path) as db:
        for _ in range(5):
            write_reports(db, Path(results).parent / "runs" / name, Path(results), name)


def test_concurrent_runs_keep_each_others_rows(tmp_path):
    names = [f"run{i}" for i in range(6)]
    for i, name in enumerate(names):
        with Database(tmp_path / f"{name}.sqlite") as db:
            db.add_program(prog("seed", 0, i / 10))
    results = tmp_path / "results"
    jobs = [(str(tmp_path / f"{n}.sqlite"), str(results), n) for n in names]
    with multiprocessing.get_context("fork").Pool(len(names)) as pool:
        pool.map(_report_worker, jobs)
    assert sorted(read(results / "leaderboard.csv")["run"]) == names


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "a.csv"
    target.write_text("old\n")

    def explode(f):
        f.write("half a row")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]
