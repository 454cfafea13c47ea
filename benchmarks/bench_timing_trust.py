"""Speed that cannot be faked (issue 14): what the evaluator reports for honest and
cheating programs, and how stable the figure is on a loaded machine.

1. The honest 80 ms program (tests/candidates/burns_80ms.py: the baseline plus SHA-256
   work) and two cheats built on it (caches_by_hash.py: a cache keyed by a hash of
   `weight`; rewrites_channel.py: wraps the runner's channel to rewrite per-call
   times), evaluated with the default task: time_ms, cpu_ms, wall_ms, speed_score,
   combined_score. Target: each cheat's time_ms at least 80% of the honest one.
2. The honest program evaluated on a quiet machine, then while two processes spin on
   the 2 cores, then quiet again: time_ms under load / the quiet mean (target within
   15%); cpu_ms, wall_ms and the evaluation's wall time beside it.

Run from the project root:  python benchmarks/bench_timing_trust.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from candidate_helpers import candidate_file  # noqa: E402

from eplb.config import load_task_config  # noqa: E402
from eplb.evaluator import evaluate_program, load_windows  # noqa: E402

HOGS = 2
CHEAT_SHARE = 0.8
LOAD_TOLERANCE = 0.15


def evaluate(name: str, task) -> dict:
    with candidate_file(name) as path:
        result = evaluate_program(path, task)
    if not result["correct"]:
        raise SystemExit(f"{name} failed: {result['error']}")
    return result["metrics"]


def row(name: str, metrics: dict) -> str:
    return (f"| {name} | {metrics['time_ms']:.1f} | {metrics['cpu_ms']:.1f} | "
            f"{metrics['wall_ms']:.1f} | {metrics['speed_score']:.3f} | "
            f"{metrics['combined_score']:.4f} |")


def with_hogs(task) -> dict:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(HOGS)]
    try:
        time.sleep(0.5)
        return evaluate("burns_80ms", task)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def main() -> int:
    task = load_task_config()
    load_windows(task)
    print("| candidate | time_ms | cpu_ms | wall_ms | speed_score | combined_score |")
    print("|---|---|---|---|---|---|")
    honest = evaluate("burns_80ms", task)
    print(row("honest, 80 ms burn", honest))
    cheats = {"+ cache keyed by a hash of weight": "caches_by_hash",
              "+ channel rewrite of the per-call times": "rewrites_channel"}
    worst = 1.0
    for label, name in cheats.items():
        metrics = evaluate(name, task)
        print(row(label, metrics))
        worst = min(worst, metrics["time_ms"] / honest["time_ms"])
    verdict = "PASS" if worst >= CHEAT_SHARE else "FAIL"
    print(f"SUMMARY cheats: the lowest cheat time_ms is {100 * worst:.0f}% of the honest one "
          f"(target >= {100 * CHEAT_SHARE:.0f}%) {verdict}")

    quiet = [honest, None]
    loaded = with_hogs(task)
    quiet[1] = evaluate("burns_80ms", task)
    print("\n| run | time_ms | cpu_ms | wall_ms | evaluation wall s |")
    print("|---|---|---|---|---|")
    for label, metrics in (("quiet", quiet[0]), (f"{HOGS} CPU hogs", loaded),
                           ("quiet again", quiet[1])):
        print(f"| {label} | {metrics['time_ms']:.1f} | {metrics['cpu_ms']:.1f} | "
              f"{metrics['wall_ms']:.1f} | {metrics['eval_seconds']:.1f} |")
    base = statistics.mean(m["time_ms"] for m in quiet)
    ratio = loaded["time_ms"] / base
    verdict = "PASS" if abs(ratio - 1) <= LOAD_TOLERANCE else "FAIL"
    print(f"SUMMARY load stability: time_ms with {HOGS} CPU hogs / quiet = {ratio:.3f} "
          f"(target within {100 * LOAD_TOLERANCE:.0f}%) {verdict}; the evaluation took "
          f"{loaded['eval_seconds']:.1f} s vs {quiet[0]['eval_seconds']:.1f} s quiet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
