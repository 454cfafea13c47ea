"""Evolution throughput with an instant scripted LLM and the baseline evaluator.

Starts the tests' OpenAI-compatible server on 127.0.0.1 answering every request at
once with a small valid diff, runs the loop on the default task (full DeepSeek-V3
shape, three scenarios) and prints candidates per minute and the share of the
worker cores' time spent evaluating (target > 90%).
Run: python benchmarks/bench_throughput.py [generations]
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from llm_server import Reply, ScriptedLLMServer  # noqa: E402

from evolve.config import ModelConfig, RunConfig, compose, run_config_from_dict  # noqa: E402
from evolve.database import Database  # noqa: E402
from evolve.loop import Evolution  # noqa: E402

TARGET = 0.90


@dataclass(frozen=True)
class Measured:
    """What one scripted run did after seeding."""

    candidates: int
    valid: int
    span_s: float  # from the last generation-0 row (seed, references) to the last candidate
    busy_s: float  # evaluation time of the candidates, summed over workers
    wall_s: float  # the whole run, seeding included


def scripted_run(generations: int, folder: str, overrides: list[str] = ()) -> tuple[
        RunConfig, Measured]:
    """A run on the default task, the scripted server answering every request at once
    with a small valid diff; returns its config and what it measured."""
    counter = itertools.count()

    def responder(request: dict) -> Reply:
        n = next(counter)
        return Reply(content=(
            "<<<<<<< SEARCH\n    per_pack = n // num_packs\n=======\n"
            f"    per_pack = n // num_packs\n    _unused = {n}\n>>>>>>> REPLACE\n"))

    with ScriptedLLMServer(responder) as server:
        os.environ["BENCH_LLM_KEY"] = "x"
        settings = [f"evolution.generations={generations}", "evolution.num_islands=2",
                    "evolution.max_in_flight=4", "evolution.patch_types={diff: 1.0}",
                    "evaluation.n_jobs=2", f"results_root={folder}", *overrides]
        config = run_config_from_dict(compose(ROOT / "configs", "eplb_example", settings))
        model = ModelConfig(name="scripted", base_url=server.base_url,
                            api_key_env="BENCH_LLM_KEY")
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
        started = time.perf_counter()
        Evolution(config, run_dir, ROOT, [model], results_root=Path(folder)).run()
        wall = time.perf_counter() - started
    db = Database(run_dir / "evolution.db")
    programs = [p for p in db.programs() if p.patch_type != "migrant"]
    db.close()
    seeded = max(p.created_at for p in programs if p.generation == 0)
    children = [p for p in programs if p.generation > 0]
    return config, Measured(len(children), sum(p.valid for p in children),
                            max(p.created_at for p in children) - seeded,
                            sum(p.eval_seconds for p in children), wall)


def main() -> None:
    generations = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    with tempfile.TemporaryDirectory() as tmp:
        config, m = scripted_run(generations, tmp)
    workers = config.evaluation.n_jobs
    share = m.busy_s / (workers * m.span_s)
    print(f"{m.candidates} candidates ({m.valid} valid) in {m.span_s:.1f} s after seeding "
          f"(run wall {m.wall_s:.1f} s, including the seed and reference evaluations)")
    print(f"throughput: {60 * m.candidates / m.span_s:.1f} candidates per minute with "
          f"{workers} evaluation workers")
    print(f"mean evaluation {m.busy_s / m.candidates:.2f} s; cores busy evaluating "
          f"{100 * share:.1f}% of the time (target > {100 * TARGET:.0f}%): "
          f"{'PASS' if share > TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
