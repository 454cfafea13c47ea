"""Human-facing run reports (CSVs, best program, plot), each rewritten atomically.

Every file is written to a temporary file in the same folder and moved into place
with `os.replace`, so a crash leaves either the old file or the new one, never a
torn one. The cross-run leaderboard is updated under an exclusive `flock`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import time
from pathlib import Path

import pandas as pd

from evolve.atomic import atomic_write
from evolve.database import Database
from evolve.records import Program, best_first
from evolve.run_page import write_run_page

log = logging.getLogger("evolve")

# The task's report columns (TaskSpec.report_columns) go after "score".
LEADERBOARD_COLUMNS = [
    "rank", "id", "score", "generation", "island", "parent_id", "patch_type", "model", "cost",
    "direction", "idea",
]  # fmt: skip
GENERATION_COLUMNS = [
    "generation", "programs", "child_score", "valid", "best_so_far", "mean_so_far",
    "valid_rate_so_far", "cost", "cost_so_far", "model",
]  # fmt: skip
LLM_COLUMNS = [
    "model", "calls", "failures", "prompt_tokens", "completion_tokens", "cost",
    "children", "improvements",
]  # fmt: skip
PARETO_COLUMNS = ["id", "score", "generation", "island"]  # the two axes after "score"
# then best_<column> for the task's report columns (each run's own; others' kept as they are)
RESULTS_COLUMNS = ["run", "best_score", "generations", "valid_rate", "cost", "updated_at"]


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    frame = pd.DataFrame(rows, columns=columns)
    atomic_write(path, lambda f: frame.to_csv(f, index=False))


def _number(value: object) -> float | None:
    """value as a finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def pareto_front(rows: list[dict], maximize: str, minimize: str) -> list[dict]:
    """Rows not dominated on (maximize high, minimize low), in input order.

    Rows missing either value (None, NaN, non-number) are left out. Rows equal on
    both values do not dominate each other, so all of them are kept.
    """
    usable = [(i, _number(r.get(maximize)), _number(r.get(minimize))) for i, r in enumerate(rows)]
    usable = [u for u in usable if u[1] is not None and u[2] is not None]
    usable.sort(key=lambda u: (-u[1], u[2]))
    keep: list[int] = []
    best_min_above = math.inf  # lowest `minimize` among rows with a strictly higher `maximize`
    start = 0
    while start < len(usable):
        end = start
        while end < len(usable) and usable[end][1] == usable[start][1]:
            end += 1
        group_min = usable[start][2]  # the group is sorted by `minimize` ascending
        if group_min < best_min_above:
            keep.extend(u[0] for u in usable[start:end] if u[2] == group_min)
        best_min_above = min(best_min_above, group_min)
        start = end
    return [rows[i] for i in sorted(keep)]


def _with_metrics(columns: list[str], extra: tuple[str, ...]) -> list[str]:
    """`columns` with the task's metric columns inserted after "score"."""
    at = columns.index("score") + 1
    return [*columns[:at], *(c for c in extra if c not in columns), *columns[at:]]


def _leaderboard_rows(ranked: list[Program], cost: dict[int, float],
                      metrics: tuple[str, ...]) -> list[dict]:
    rows = []
    for rank, p in enumerate(ranked, start=1):
        rows.append(
            {
                "rank": rank, "id": p.id, "score": p.score,
                **{m: p.metrics.get(m) for m in metrics},
                "generation": p.generation, "island": p.island, "parent_id": p.parent_id,
                "patch_type": p.patch_type, "model": p.model,
                "cost": cost.get(p.generation, 0.0), "direction": p.direction, "idea": p.idea,
            }
        )  # fmt: skip
    return rows


def _generation_rows(programs: list[Program], cost: dict[int, float]) -> list[dict]:
    by_gen: dict[int, list[Program]] = {}
    for p in programs:
        by_gen.setdefault(p.generation, []).append(p)
    rows, best, total, seen, valid_seen = [], None, 0.0, 0, 0
    spend = sorted(cost.items())  # (generation, cost), consumed as generations advance
    spent, next_cost = 0.0, 0
    for g in sorted(by_gen):
        while next_cost < len(spend) and spend[next_cost][0] <= g:
            spent += spend[next_cost][1]
            next_cost += 1
        group = by_gen[g]
        valid = [p.score for p in group if p.valid and p.score is not None]
        total += sum(valid)
        seen += len(group)
        valid_seen += len(valid)
        if valid:
            best = max(valid) if best is None else max(best, max(valid))
        models = sorted({p.model for p in group if p.model})
        rows.append(
            {
                "generation": g, "programs": len(group),
                "child_score": max(valid) if valid else None, "valid": int(bool(valid)),
                "best_so_far": best, "mean_so_far": total / valid_seen if valid_seen else None,
                "valid_rate_so_far": valid_seen / seen, "cost": cost.get(g, 0.0),
                "cost_so_far": spent, "model": "+".join(models),
            }
        )  # fmt: skip
    return rows


def _llm_rows(db: Database, programs: list[Program]) -> list[dict]:
    stats: dict[str, dict] = {}

    def row(model: str) -> dict:
        return stats.setdefault(model, {c: 0 for c in LLM_COLUMNS} | {"model": model})

    for model, usage in db.llm_usage().items():
        row(model).update(usage)
    score = {p.id: p.score for p in programs}
    for p in programs:
        if p.model is None or p.parent_id is None or p.patch_type == "migrant":
            continue
        r = row(p.model)
        r["children"] += 1
        parent_score = score.get(p.parent_id)
        if p.score is not None and parent_score is not None and p.score > parent_score:
            r["improvements"] += 1
    return [stats[m] for m in sorted(stats)]


def _write_plot(path: Path, generations: list[dict]) -> None:
    points = [g for g in generations if g["best_so_far"] is not None]
    if len(points) < 2:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = [g["generation"] for g in points]
    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(x, [g["best_so_far"] for g in points], label="best so far")
    ax.plot(x, [g["mean_so_far"] for g in points], label="running mean", alpha=0.7)
    ax.set_xlabel("generation")
    ax.set_ylabel("score")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100), binary=True)


def _update_results(results_root: Path, run_name: str, row: dict) -> None:
    """Upsert this run's row in results_root/leaderboard.csv under an exclusive lock."""
    results_root.mkdir(parents=True, exist_ok=True)
    table = results_root / "leaderboard.csv"
    with open(results_root / ".leaderboard.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            old = pd.read_csv(table, dtype={"run": str}) if table.exists() else None
            rows = [] if old is None else old[old["run"] != run_name].to_dict("records")
            rows.append(row)
            rows.sort(key=lambda r: -s if (s := _number(r.get("best_score"))) is not None else 1)
            seen = [] if old is None else list(old.columns)
            _write_csv(table, rows, list(dict.fromkeys([*RESULTS_COLUMNS, *seen, *row])))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_reports(
    db: Database, run_dir: Path, results_root: Path | None = None, run_name: str | None = None,
    columns: tuple[str, ...] = (), pareto: tuple[str, ...] = (),
) -> None:
    """Rewrite the run's report files in run_dir (and its row in results_root, if given),
    and the run page, index.html (see evolve.run_page; a failure there is only logged).

    `columns` are the metrics the leaderboards show after the score, `pareto` the
    (maximise, minimise) metrics of pareto.csv, written only when given (see TaskSpec).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cost = db.cost_by_generation()
    everything = db.programs()
    own = [p for p in everything if p.patch_type != "migrant"]
    ranked = best_first(own)
    # Reference policies are ranked on the leaderboard and the Pareto front, beside evolved
    # programs, but they are not the run's own: not its best, its history or its valid rate.
    own = [p for p in own if p.patch_type != "reference"]
    evolved = [p for p in ranked if p.patch_type != "reference"]

    _write_csv(run_dir / "leaderboard.csv", _leaderboard_rows(ranked, cost, columns),
               _with_metrics(LEADERBOARD_COLUMNS, columns))
    generations = _generation_rows(own, cost)
    _write_csv(run_dir / "generations.csv", generations, GENERATION_COLUMNS)
    _write_csv(run_dir / "llm.csv", _llm_rows(db, everything), LLM_COLUMNS)
    if pareto:
        candidates = [{"id": p.id, "score": p.score, **{m: p.metrics.get(m) for m in pareto},
                       "generation": p.generation, "island": p.island} for p in ranked]
        front = pareto_front(candidates, *pareto)
        _write_csv(run_dir / "pareto.csv", front, _with_metrics(PARETO_COLUMNS, pareto))

    best = evolved[0] if evolved else None
    if best is not None:
        summary = {
            "id": best.id, "score": best.score, "generation": best.generation,
            "island": best.island, "patch_type": best.patch_type, "model": best.model,
            "metrics": best.metrics,
        }  # fmt: skip
        atomic_write(run_dir / "best" / "program.py", lambda f: f.write(best.code))
        atomic_write(run_dir / "best" / "metrics.json", lambda f: json.dump(summary, f, indent=2))
    _write_plot(run_dir / "plot.png", generations)

    if results_root is not None:
        _update_results(
            Path(results_root),
            run_name or run_dir.name,
            {
                "run": run_name or run_dir.name,
                "best_score": best.score if best else None,
                **{f"best_{c}": best.metrics.get(c) if best else None for c in columns},
                "generations": len(db.completed_generations()),
                "valid_rate": len(evolved) / len(own) if own else None,
                "cost": db.total_cost(),
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
    try:
        write_run_page(db.path, run_dir, columns, pareto)
    except Exception as exc:  # the page is a view: it never stops the reports or the run
        log.warning("writing the run page %s failed: %s", run_dir / "index.html", exc)
