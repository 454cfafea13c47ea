"""How much the search repeats itself, with a scripted OpenAI-compatible server.

The server (tests/llm_server.py) answers each request with a reply drawn from a pool:
exact copies of a few programs, the same programs with a local variable renamed and a
comment added (structural copies), numeric tweaks of one program, real changes (a new
structure each) and garbage (no code). A real run of the loop on the tests' tiny task
(2 islands, 4 proposals in flight) prints:
- evaluations saved: proposals with code that were not evaluated (duplicates), against
  what the rule before (identical text among the programs visible to the generation)
  would have evaluated;
- distinct prompts in flight: requests under way at the same time (measured at the
  server) whose prompts differ, of all such pairs;
- the share of prompts that carry memory (children's attempts or the island's ledger).
Run: python benchmarks/bench_search.py [generations]
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from evo_helpers import (  # noqa: E402
    KEY_ENV,
    NO_CODE_REPLY,
    NO_SPEED,
    PACK_LINE,
    children,
    full_block,
    llm_calls,
    model_override,
    programs,
    run_in_process,
)
from llm_server import ScriptedLLMServer  # noqa: E402

from evolve.patches import code_hash  # noqa: E402

KINDS = {"exact": 0.25, "structural": 0.2, "tweak": 0.2, "real": 0.25, "garbage": 0.1}
DELAY_S = 0.4  # each reply is held this long, so that requests overlap


def reply_of(kind: str, rng: random.Random, serial: int) -> str:
    """One reply of the pool; `serial` makes real changes distinct."""
    if kind == "garbage":
        return NO_CODE_REPLY
    base = rng.choice([1, 2, 3])
    block = full_block(base)
    if kind == "structural":
        block = block.replace("per_pack", "chunk").replace(
            PACK_LINE.replace("per_pack", "chunk"),
            "    # items per pack\n" + PACK_LINE.replace("per_pack", "chunk"))
    elif kind == "tweak":
        block = full_block(rng.randrange(10, 10_000))
    elif kind == "real":  # a tuple of a new length: a new structure
        block = block.replace(f"_unused = {base}", f"_unused = {tuple(range(serial + 2))}")
    return f"Idea: {kind} reply {serial}.\n\n```python\n{block}```\n"


def main() -> None:
    generations = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    rng = random.Random(0)
    lock = threading.Lock()
    active: dict[int, str] = {}
    pairs = Counter()
    served = Counter()
    serial = iter(range(10**6))

    def responder(request):
        prompt = request["messages"][0]["content"] + request["messages"][-1]["content"]
        with lock:
            n = next(serial)
            kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
            served[kind] += 1
            for other in active.values():
                pairs["same" if other == prompt else "distinct"] += 1
            active[n] = prompt
        time.sleep(DELAY_S)
        with lock:
            del active[n]
            return reply_of(kind, rng, n)

    os.environ[KEY_ENV] = "sk-bench"
    with tempfile.TemporaryDirectory() as tmp, ScriptedLLMServer(responder) as server:
        started = time.monotonic()
        reason, run_dir = run_in_process(Path(tmp), "search", [
            f"evolution.generations={generations}", "evolution.num_islands=2",
            "evolution.max_in_flight=4", "evolution.migration_interval=0",
            "evolution.patch_types={full: 1.0}", "evaluation.n_jobs=2",
            model_override(server), *NO_SPEED])
        wall = time.monotonic() - started
        rows = children(run_dir)
        everything = programs(run_dir)
        calls = [c for c in llm_calls(run_dir) if c["purpose"] == "mutation"]
    assert reason == "finished", reason
    with_code = [r for r in rows if r["code"]]
    evaluated = [r for r in with_code if r["outcome"] != "duplicate"]
    old_rule = 0  # identical text among valid non-migrant programs visible to g
    for r in with_code:
        twin = any(p["code_hash"] == code_hash(r["code"]) and p["valid"]
                   and p["patch_type"] != "migrant" and p["generation"] <= r["generation"] - 4
                   for p in everything)
        old_rule += not twin
    memory = sum("# What earlier children" in c["user"] or "# Ideas tried on this island"
                 in c["user"] for c in calls)
    total_pairs = pairs["same"] + pairs["distinct"]
    print(f"replies served: {dict(served)}; {len(with_code)} proposals with code, "
          f"{wall:.0f} s")
    print(f"SUMMARY evaluations: {len(evaluated)} of {len(with_code)} proposals with code "
          f"(the rule before: {old_rule}); saved {old_rule - len(evaluated)} "
          f"({(old_rule - len(evaluated)) / max(old_rule, 1):.0%} of the rule before's)")
    print(f"SUMMARY prompts in flight together: {pairs['distinct']} of {total_pairs} pairs "
          f"distinct ({pairs['distinct'] / max(total_pairs, 1):.0%})")
    print(f"SUMMARY prompts carrying memory: {memory} of {len(calls)} "
          f"({memory / max(len(calls), 1):.0%})")


if __name__ == "__main__":
    main()
