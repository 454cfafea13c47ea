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

import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from llm_server import Reply, ScriptedLLMServer  # noqa: E402

from evolve.config import EvaluationSettings, compose, run_config_from_dict  # noqa: E402
from evolve.database import Database  # noqa: E402
from evolve.evaluation import make_pool  # noqa: E402
from evolve.llm import ModelConfig  # noqa: E402
from evolve.loop import Evolution  # noqa: E402

NOOP = "bench_dask:noop_evaluate"  # workers import this file (sys.path is passed on)
ROUND_TRIPS = 60
TARGET_SHARE = 0.90  # dask throughput at least 90% of local
TARGET_OVERHEAD_MS = 50.0


def noop_evaluate(program_path: str, task: dict, results_dir: str | None = None) -> dict:
    """An evaluator that does nothing: what is left of a round trip is the pool's cost."""
    return {"correct": True, "error": None, "metrics": {}, "feedback": ""}


def throughput(backend: str, generations: int, tmp: str) -> tuple[int, float, float]:
    """(candidates, seconds from the seed's end to the last candidate's, evaluation seconds)."""
    counter = itertools.count()

    def responder(request: dict) -> Reply:
        n = next(counter)
        return Reply(content=(
            "<<<<<<< SEARCH\n    per_pack = n // num_packs\n=======\n"
            f"    per_pack = n // num_packs\n    _unused = {n}\n>>>>>>> REPLACE\n"))

    with ScriptedLLMServer(responder) as server:
        os.environ["BENCH_LLM_KEY"] = "x"
        overrides = [f"evolution.generations={generations}", "evolution.num_islands=2",
                     "evolution.max_in_flight=4", "evolution.patch_types={diff: 1.0}",
                     "evaluation.n_jobs=2", f"evaluation.backend={backend}",
                     f"results_root={tmp}"]
        config = run_config_from_dict(compose(ROOT / "configs", "eplb_example", overrides))
        model = ModelConfig(name="scripted", base_url=server.base_url,
                            api_key_env="BENCH_LLM_KEY")
        run_dir = Path(tempfile.mkdtemp(prefix=f"{backend}-", dir=tmp))
        Evolution(config, run_dir, ROOT, [model], results_root=Path(tmp)).run()
    db = Database(run_dir / "evolution.db")
    programs = [p for p in db.programs() if p.patch_type != "migrant"]
    db.close()
    seed = next(p for p in programs if p.generation == 0)
    children = [p for p in programs if p.generation > 0]
    span = max(p.created_at for p in children) - seed.created_at
    return len(children), span, sum(p.eval_seconds for p in children)


def round_trip_ms(backend: str, program: Path) -> float:
    """Median submit -> result time of a no-op evaluation, after a warm-up."""
    pool = make_pool(EvaluationSettings(n_jobs=2, backend=backend), NOOP, {})
    try:
        for _ in range(4):  # start and warm the workers
            pool.submit(NOOP, str(program), {}, None).result()
        times = []
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            pool.submit(NOOP, str(program), {}, None).result()
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
            for i, value in enumerate(throughput(backend, generations, tmp)):
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
