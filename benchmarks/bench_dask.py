"""Local (joblib) versus dask (LocalCluster on 127.0.0.1) evaluation on this machine.

1. Throughput: the same short run on each backend, twice, in the order local, dask,
   dask, local (the machine's load drifts), on the default task with the tests' scripted
   OpenAI-compatible server answering at once (as bench_throughput.py): candidates per
   minute after seeding (all candidates over all spans), mean evaluation time on workers.
2. Per-candidate overhead: round trip (submit -> result) of a no-op evaluation through
   each pool, median of many; the difference is what the dask path adds per candidate
   (reading and shipping the program's text, scheduling, the worker's temporary file).
Run: python benchmarks/bench_dask.py [GENERATIONS per run, default 8]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_throughput import scripted_run  # noqa: E402  (this folder is on sys.path)

from evolve.config import EvaluationSettings  # noqa: E402
from evolve.evaluation import make_pool  # noqa: E402

NOOP = "bench_dask:NoopTask"  # workers import this file (sys.path is passed on)
ROUND_TRIPS = 60
TARGET_SHARE = 0.90  # dask throughput at least 90% of local
TARGET_OVERHEAD_MS = 50.0


class NoopTask:
    """A task that does nothing: what is left of a round trip is the pool's cost."""

    def __init__(self, options: dict):
        pass

    def prepare(self) -> None:
        return None

    def evaluate(self, program_path: str, results_dir: str | None = None,
                 prepared: None = None) -> dict:
        return {"correct": True, "error": None, "metrics": {}, "feedback": ""}


def round_trip_ms(backend: str, program: Path) -> float:
    """Median submit -> result time of a no-op evaluation, after a warm-up."""
    pool = make_pool(EvaluationSettings(n_jobs=2, backend=backend), NOOP, {})
    try:
        for _ in range(4):  # start and warm the workers
            pool.submit(str(program)).result()
        times = []
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            pool.submit(str(program)).result()
            times.append(time.perf_counter() - started)
    finally:
        pool.shutdown()
    return 1000 * statistics.median(times)


def main() -> None:
    generations = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    totals = {b: [0, 0.0, 0.0] for b in ("local", "dask")}
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / "g000001.py"
        program.write_text((ROOT / "initial.py").read_text())
        trips = {b: round_trip_ms(b, program) for b in ("local", "dask")}
        for backend in ("local", "dask", "dask", "local"):
            _, m = scripted_run(generations, tmp, [f"evaluation.backend={backend}"])
            for i, value in enumerate((m.candidates, m.span_s, m.busy_s)):
                totals[backend][i] += value
    rates = {}
    for backend, (count, span, busy) in totals.items():
        rates[backend] = 60 * count / span
        print(f"{backend:5s}: {rates[backend]:.1f} candidates per minute ({count} candidates "
              f"in 2 runs, 2 workers), mean evaluation {busy / count:.2f} s; no-op round "
              f"trip {trips[backend]:.2f} ms")
    share = rates["dask"] / rates["local"]
    overhead = trips["dask"] - trips["local"]
    print(f"SUMMARY throughput: dask {rates['dask']:.1f} vs local {rates['local']:.1f} "
          f"candidates per minute = {100 * share:.0f}% (target >= {100 * TARGET_SHARE:.0f}%) "
          f"{'PASS' if share >= TARGET_SHARE else 'FAIL'}")
    print(f"SUMMARY per-candidate overhead of the dask path: {overhead:+.2f} ms per evaluation "
          f"(no-op round trip {trips['dask']:.2f} ms vs {trips['local']:.2f} ms, median of "
          f"{ROUND_TRIPS}; target < {TARGET_OVERHEAD_MS:.0f} ms) "
          f"{'PASS' if overhead < TARGET_OVERHEAD_MS else 'FAIL'}")


if __name__ == "__main__":
    main()
