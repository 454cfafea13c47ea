"""Engine overhead per candidate with 10,000 programs in the database.

Measures, per candidate, the engine's own work: planning (parent selection,
inspirations, recent failures, prompt rendering), applying a SEARCH/REPLACE reply,
hashing for duplicates, and storing the program (SQLite) and indexing it in memory.
Target: under 20 ms. Run: python benchmarks/bench_engine_overhead.py
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evolve import patches  # noqa: E402
from evolve.config import ModelConfig, compose, run_config_from_dict  # noqa: E402
from evolve.database import Database  # noqa: E402
from evolve.population import Population  # noqa: E402
from evolve.proposer import Proposer  # noqa: E402
from evolve.records import Program  # noqa: E402

PROGRAMS = 10_000
SAMPLES = 200
TARGET_MS = 20.0


def variant(code: str, n: int) -> str:
    anchor = "    rows, n = weight.shape\n"
    return code.replace(anchor, f"{anchor}    _v = {n}\n", 1)


def fill(db: Database, population: Population, code: str, islands: int) -> None:
    rng = random.Random(0)
    for i in range(PROGRAMS):
        valid = rng.random() < 0.7
        text = variant(code, i)
        p = Program(
            id=f"p{i}", code=text, generation=i // islands + 1, island=i % islands,
            parent_id=f"p{max(0, i - islands)}", patch_type="diff", model="m", valid=valid,
            score=rng.uniform(0.85, 0.92) if valid else None,
            metrics={"combined_score": 0.9, "balancedness_gpu": 0.8, "time_ms": 5.0},
            error=None if valid else "invalid placement: [coverage] ...",
            feedback="ds_32gpu: balancedness_gpu 0.85 ...", code_hash=patches.code_hash(text))
        db.add_program(p)
        population.add(p)


def main() -> None:
    config = run_config_from_dict(compose(ROOT / "configs", "eplb_example"))
    model = ModelConfig(name="m", context_window=128_000, max_tokens=8192)
    code = (ROOT / "initial.py").read_text()
    islands = config.evolution.num_islands
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "evolution.db")
        population = Population(islands)
        started = time.perf_counter()
        fill(db, population, code, islands)
        print(f"filled {PROGRAMS} programs in {time.perf_counter() - started:.1f} s")
        proposer = Proposer(config, [model], ROOT / config.prompts_dir)
        cutoff = PROGRAMS // islands
        reply = ("<<<<<<< SEARCH\n    per_pack = n // num_packs\n=======\n"
                 "    per_pack = n // num_packs\n    _w = {n}\n>>>>>>> REPLACE\n")
        parts = {"plan": [], "patch": [], "store": []}
        for k in range(SAMPLES):
            generation = cutoff + 1 + k
            t0 = time.perf_counter()
            proposal = proposer.plan(generation, population, cutoff, lambda rng: "m")
            t1 = time.perf_counter()
            child = patches.apply_reply("diff", proposal.parent.code, reply.format(n=k))
            digest = patches.code_hash(child)
            t2 = time.perf_counter()
            program = Program(id=f"c{k}", code=child, generation=generation,
                              island=proposal.island, parent_id=proposal.parent.id,
                              valid=True, score=0.9, code_hash=digest,
                              metrics={"combined_score": 0.9})
            db.add_program(program)
            population.add(program)
            t3 = time.perf_counter()
            parts["plan"].append(t1 - t0)
            parts["patch"].append(t2 - t1)
            parts["store"].append(t3 - t2)
        db.close()
    total = [sum(x) for x in zip(*parts.values(), strict=True)]
    for name, values in parts.items():
        print(f"  {name:<6} median {1000 * statistics.median(values):7.2f} ms")
    median_ms = 1000 * statistics.median(total)
    p90_ms = 1000 * sorted(total)[int(0.9 * len(total))]
    verdict = "PASS" if median_ms < TARGET_MS else "FAIL"
    print(f"engine overhead per candidate with {PROGRAMS} programs: median {median_ms:.2f} ms, "
          f"p90 {p90_ms:.2f} ms (target < {TARGET_MS:.0f} ms): {verdict}")


if __name__ == "__main__":
    main()
