"""What an evaluation worker imports before its first evaluation, now and before the task
contract (when every worker imported `openai` through evolve.config -> evolve.llm).

    python benchmarks/bench_worker_import.py

Each figure is the median wall time of a fresh interpreter doing only the imports.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 7
NOW = "import evolve.evaluation.worker, eplb.task, sys; assert 'openai' not in sys.modules"
BEFORE = "import evolve.evaluation.worker, eplb.task, openai"  # + what the old chain pulled in
BARE = "pass"


def median_s(code: str) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    bare, now, before = median_s(BARE), median_s(NOW), median_s(BEFORE)
    print(f"interpreter alone           {bare:.3f} s")
    print(f"worker imports now          {now:.3f} s  (no openai)")
    print(f"worker imports with openai  {before:.3f} s  (what each worker paid before)")
    share = (now - bare) / (before - bare)
    print(f"SUMMARY worker imports: {now:.2f} s without openai vs {before:.2f} s with it "
          f"(median of {RUNS}; {before - now:.2f} s saved per worker start; imports take "
          f"{share:.0%} of before; target < 50%) {'PASS' if share < 0.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
