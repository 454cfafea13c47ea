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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from llm_server import Reply, ScriptedLLMServer  # noqa: E402

from evolve.config import compose, run_config_from_dict  # noqa: E402
from evolve.database import Database  # noqa: E402
from evolve.llm import ModelConfig  # noqa: E402
from evolve.loop import Evolution  # noqa: E402

TARGET = 0.90


def main() -> None:
    generations = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    counter = itertools.count()

    def responder(request: dict) -> Reply:
        n = next(counter)
        return Reply(content=(
            "<<<<<<< SEARCH\n    per_pack = n // num_packs\n=======\n"
            f"    per_pack = n // num_packs\n    _unused = {n}\n>>>>>>> REPLACE\n"))

    with ScriptedLLMServer(responder) as server, tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCH_LLM_KEY"] = "x"
        overrides = [f"evolution.generations={generations}", "evolution.num_islands=2",
                     "evolution.max_in_flight=4", "evolution.patch_types={diff: 1.0}",
                     "evaluation.n_jobs=2", f"results_root={tmp}"]
        config = run_config_from_dict(compose(ROOT / "configs", "eplb_example", overrides))
        model = ModelConfig(name="scripted", base_url=server.base_url,
                            api_key_env="BENCH_LLM_KEY")
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        started = time.perf_counter()
        Evolution(config, run_dir, ROOT, [model], results_root=Path(tmp)).run()
        wall = time.perf_counter() - started
        db = Database(run_dir / "evolution.db")
        programs = [p for p in db.programs() if p.patch_type != "migrant"]
        db.close()
    seed = next(p for p in programs if p.generation == 0)
    children = [p for p in programs if p.generation > 0]
    span = max(p.created_at for p in children) - seed.created_at
    busy = sum(p.eval_seconds for p in children)
    share = busy / (config.evaluation.n_jobs * span)
    valid = sum(p.valid for p in children)
    print(f"{len(children)} candidates ({valid} valid) in {span:.1f} s after seeding "
          f"(run wall {wall:.1f} s, including the seed evaluation)")
    print(f"throughput: {60 * len(children) / span:.1f} candidates per minute with "
          f"{config.evaluation.n_jobs} evaluation workers")
    print(f"mean evaluation {busy / len(children):.2f} s; cores busy evaluating "
          f"{100 * share:.1f}% of the time (target > {100 * TARGET:.0f}%): "
          f"{'PASS' if share > TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
