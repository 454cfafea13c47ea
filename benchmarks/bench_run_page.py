"""The run page at scale: a synthetic 10,000-program run, its index.html's size and the
time until it is usable in headless Chromium.

The database is filled the way a run fills it: a seed, four islands, children that edit
one or two lines of their parent, ring migrations, failures of every kind, and one LLM
call per proposal whose prompt shows the parent and two inspirations with their metrics
(the metric names and feedback come from one real evaluation of initial.py). The page is
written by `evolve.run_page.write_run_page`, then opened from file:// in Debian's
Chromium (/usr/bin/chromium, through Playwright) until the program table has rendered.
Targets: under 20 MB, usable within 3 s.

    python benchmarks/bench_run_page.py [--programs N] [--screenshot docs/run_page.png]

With --screenshot it also saves a picture of the overview (of a smaller run, e.g.
--programs 400, the charts read better).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evolve import patches, sandbox  # noqa: E402
from evolve.config import compose, run_config_from_dict  # noqa: E402
from evolve.database import Database  # noqa: E402
from evolve.records import LLMCall, Program  # noqa: E402
from evolve.run_page import write_run_page  # noqa: E402
from evolve.task import load_task  # noqa: E402

SIZE_TARGET_MB = 20.0
USABLE_TARGET_S = 3.0
ISLANDS = 4
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
OUTCOMES = [("valid", 0.62), ("invalid", 0.12), ("duplicate", 0.08), ("no_patch", 0.12),
            ("llm_error", 0.03), ("timeout", 0.03)]
ERRORS = {
    "invalid": "invalid placement: [coverage] layer {l}: expert {e} has no replica",
    "duplicate": "duplicate of program {d}: identical code is not evaluated again; make a "
                 "real change",
    "no_patch": "unusable reply: SEARCH block 1 does not match any lines of the parent\n"
                "closest lines (similarity 0.71):\n    per_pack = n // num_packs\n"
                "    packs = []",
    "llm_error": "LLM call failed: APITimeoutError: Request timed out.",
    "timeout": "evaluation exceeded the watchdog (600 s) and was killed",
}


def real_evaluation() -> tuple[dict, str, str, tuple[str, ...], tuple[str, ...]]:
    """Metrics and feedback of initial.py on the default task, and the task's description,
    report columns and Pareto axes."""
    config = run_config_from_dict(compose(ROOT / "configs", "eplb_example"))
    spec = config.task.engine
    task = load_task(spec.entry, config.task.options)
    try:
        result = task.evaluate(str(ROOT / "initial.py"))
    finally:
        sandbox.shutdown_templates()
    return (result["metrics"], result["feedback"], task.describe(spec.description),
            spec.report_columns, spec.pareto)


def mutate(code: str, rng: random.Random, n: int) -> str:
    """The parent's code with one line added (and sometimes one changed) in its body."""
    lines = code.split("\n")
    at = rng.randrange(len(lines) // 3, len(lines) - 5)
    indent = len(lines[at]) - len(lines[at].lstrip()) or 4
    lines.insert(at + 1, " " * indent + f"_tweak_{n} = {rng.random():.6f}  # idea {n}")
    if rng.random() < 0.3:
        k = rng.randrange(len(lines) // 3, len(lines) - 5)
        lines[k] = lines[k].replace("1", "2", 1)
    return "\n".join(lines)


def metric_lines(p: Program) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in sorted(p.metrics.items()))


def fill(db: Database, programs: int, metrics: dict, feedback: str, description: str) -> None:
    rng = random.Random(0)
    code = (ROOT / "initial.py").read_text()
    seed = Program(id="seed", code=code, generation=0, island=0, patch_type="initial",
                   valid=True, score=metrics["combined_score"], metrics=metrics,
                   feedback=feedback, code_hash=patches.code_hash(code), outcome="valid")
    rows = [seed] + [replace(seed, id=f"seed-{i}", island=i, patch_type="migrant",
                             parent_id="seed") for i in range(1, ISLANDS)]
    db.add_programs(rows)
    pool = {i: [r] for i, r in enumerate(rows)}  # valid programs per island
    system = ("You are an expert in MoE expert-parallel load balancing. " * 40).strip()
    count, generation = len(rows), 0
    while count < programs:
        generation += 1
        island = (generation - 1) % ISLANDS
        if generation % 20 == 0:  # ring migration of every island's best
            copies = []
            for i in range(ISLANDS):
                best = max(pool[i], key=lambda p: p.score)
                copies.append(replace(best, id=f"m{generation:06d}-{i}", generation=generation,
                                      island=(i + 1) % ISLANDS, patch_type="migrant",
                                      parent_id=best.id))
            db.add_programs(copies)
            for c in copies:
                pool[c.island].append(c)
            count += len(copies)
        ranked = sorted(pool[island], key=lambda p: -p.score)
        parent = ranked[min(len(ranked) - 1, int(rng.expovariate(0.5)))]
        inspirations = rng.sample(ranked[:10], min(2, len(ranked)))
        outcome = rng.choices([o for o, _ in OUTCOMES], [w for _, w in OUTCOMES])[0]
        child_code = mutate(parent.code, rng, generation)
        reply = (f"Idea: tweak number {generation}: rebalance the hottest experts first.\n\n"
                 f"<<<<<<< SEARCH\n{parent.code.split(chr(10))[40]}\n=======\n"
                 f"{child_code.split(chr(10))[40]}\n    _w = {generation}\n>>>>>>> REPLACE\n")
        user = "\n\n".join([description, f"## Program {parent.id} (parent)", metric_lines(parent),
                            "```python", parent.code, "```",
                            *[f"## Program {q.id}\n{metric_lines(q)}\n```python\n{q.code}\n```"
                              for q in inspirations],
                            "Propose one improvement as SEARCH/REPLACE edits."])
        call = LLMCall(generation=generation, model=rng.choice(["model-a", "model-b"]),
                       temperature=rng.choice([0.4, 0.8]), system=system, user=user,
                       reply=None if outcome == "llm_error" else reply,
                       prompt_tokens=len(user) // 4, completion_tokens=len(reply) // 4,
                       cost=len(user) / 4e6 * 3 + len(reply) / 4e6 * 15,
                       latency_s=rng.uniform(2, 30),
                       error="Request timed out." if outcome == "llm_error" else None)
        db.add_llm_call(call)
        valid = outcome == "valid"
        score = min(0.99, parent.score + rng.gauss(0.0, 0.01)) if valid else None
        child_metrics = {k: (v * rng.uniform(0.97, 1.03) if isinstance(v, float) else v)
                         for k, v in metrics.items()} if valid else {}
        if valid:
            child_metrics["combined_score"] = score
        kept = "" if outcome in ("no_patch", "llm_error") else child_code
        error = ERRORS.get(outcome, "").format(l=rng.randrange(58), e=rng.randrange(256),
                                               d=parent.id) or None
        child = Program(id=f"g{generation:06d}", code=kept, generation=generation,
                        island=island, parent_id=parent.id, patch_type="diff",
                        model=call.model, valid=valid, score=score, metrics=child_metrics,
                        error=error, feedback=feedback.replace("0.", f"0.{generation % 7}", 3)
                        if valid else "", code_hash=patches.code_hash(kept) if kept else "",
                        outcome=outcome, idea=f"tweak number {generation}",
                        duplicate_of=parent.id if outcome == "duplicate" else None)
        db.add_program(child)
        if valid:
            pool[island].append(child)
        count += 1
    db.set_meta("run_state", {"state": "ended", "stop_reason": "finished"})


def time_rewrite(run_dir: Path, columns, pareto) -> float:
    """Seconds to rewrite the page after 10 more programs, as the loop does at each report
    (only the new rows are encoded)."""
    with Database(run_dir / "evolution.db") as db:
        last = db.programs()[-1]
        calls = db.llm_calls(last.generation)
        for k in range(1, 11):
            g = last.generation + k
            code = last.code + f"\n_more = {k}\n"
            db.add_program(replace(last, id=f"g{g:06d}", generation=g, code=code,
                                   code_hash=patches.code_hash(code)))
            if calls:
                db.add_llm_call(replace(calls[-1], generation=g))
    started = time.perf_counter()
    write_run_page(run_dir / "evolution.db", run_dir, columns, pareto)
    return time.perf_counter() - started


def browse(page: Path, last_id: str, screenshot: Path | None) -> dict[str, float]:
    """Seconds from navigation until the program table has rendered its rows ("usable"),
    then to switch to island 0's lineage and to the last program's view."""
    from playwright.sync_api import sync_playwright

    def timed(action, selector: str) -> float:
        started = time.perf_counter()
        action()
        tab.wait_for_selector(selector, timeout=60_000)
        return time.perf_counter() - started

    def show(fragment: str):
        return lambda: tab.evaluate("(h) => { location.hash = h; }", fragment)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            times = {"usable": timed(lambda: tab.goto(page.as_uri() + "#view=table"),
                                     "#table-body .vrow"),
                     "lineage": timed(show("view=lineage&island=0"), "#lineage-svg"),
                     "program": timed(show(f"program={last_id}"), "#program-title")}
            if screenshot is not None:
                tab.set_viewport_size({"width": 1400, "height": 700})
                tab.evaluate("location.hash = 'view=overview'")
                tab.wait_for_selector("#chart-score svg")
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                tab.screenshot(path=str(screenshot), full_page=False)
        finally:
            browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=10_000)
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the overview here")
    args = parser.parse_args()
    metrics, feedback, description, _, pareto = real_evaluation()
    columns = ("balancedness_gpu", "time_ms")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "synthetic-run"
        db = Database(run_dir / "evolution.db")
        started = time.perf_counter()
        fill(db, args.programs, metrics, feedback, description)
        filled = time.perf_counter() - started
        db.close()
        db_mb = os.path.getsize(run_dir / "evolution.db") / 1e6
        started = time.perf_counter()
        page = write_run_page(run_dir / "evolution.db", run_dir, columns, pareto)
        written = time.perf_counter() - started
        size_mb = page.stat().st_size / 1e6
        rewrite = time_rewrite(run_dir, columns, pareto)
        with Database(run_dir / "evolution.db") as db:
            last_id = db.programs()[-1].id
        times = browse(page, last_id, args.screenshot)
    print(f"filled {args.programs} programs in {filled:.1f} s (database {db_mb:.1f} MB); "
          f"page written in {written:.2f} s, rewritten after 10 more programs in "
          f"{rewrite:.2f} s")
    size_verdict = "PASS" if size_mb < SIZE_TARGET_MB else "FAIL"
    usable = times["usable"]
    time_verdict = "PASS" if usable < USABLE_TARGET_S else "FAIL"
    print(f"SUMMARY run page of {args.programs} programs: {size_mb:.2f} MB "
          f"({size_mb / db_mb:.2f}x the database; target < {SIZE_TARGET_MB:.0f} MB) "
          f"{size_verdict}")
    print(f"SUMMARY usable (program table rendered) in {usable:.2f} s in headless Chromium "
          f"(target < {USABLE_TARGET_S:.0f} s) {time_verdict}")
    print(f"SUMMARY then island 0's lineage in {times['lineage']:.2f} s, the last program's "
          f"view in {times['program']:.2f} s (informational)")


if __name__ == "__main__":
    main()
