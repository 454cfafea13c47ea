"""Shared helpers for the end-to-end tests of the evolution loop (tests/test_evolution_*.py).

Runs use a tiny EPLB task (4 layers x 32 experts, 2 scored windows, one scenario) so that
one candidate evaluation takes a second or two, and talk to `llm_server.ScriptedLLMServer`
through the real `openai` client.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

from evolve.config import compose, run_config_from_dict
from evolve.llm import is_configured
from evolve.loop import Evolution
from evolve.patches import split_evolve_block

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "EVO_TEST_API_KEY"

TINY_TASK = [
    "task.synthetic.layers=4",
    "task.synthetic.experts=32",
    "task.synthetic.steps=300",
    "task.scenarios=[{name: s, num_replicas: 40, num_groups: 4, num_nodes: 2, num_gpus: 8}]",
    "task.timing.repeats=1",
    "task.limits.timeout_s=20",
]
# combined_score = balancedness_gpu only: scores then do not depend on the machine's speed.
NO_SPEED = ["task.score.speed=0"]

INITIAL_CODE = (PROJECT_ROOT / "initial.py").read_text()
INITIAL_BLOCK = split_evolve_block(INITIAL_CODE)[1]

PACK_LINE = "    per_pack = n // num_packs"  # once, in balanced_packing
WEIGHT_LINE = "    weight = weight.float().cpu().contiguous()"  # once, in rebalance_experts
SHAPE_LINE = "    layers, experts = weight.shape"  # twice: in rebalance_hierarchical and above


# ---------------------------------------------------------------- configuration


def model_override(server, **fields) -> str:
    """An `llm.models=[...]` override naming one model on the scripted server."""
    model = {"name": "m1", "base_url": server.base_url, "api_key_env": KEY_ENV,
             "temperatures": [0.4, 0.8], "max_tokens": 2048, "context_window": 64000,
             "price_in_per_m": 0.0, "price_out_per_m": 0.0}
    model.update(fields)
    return "llm.models=" + json.dumps([model])


def fast_retry(**fields) -> str:
    retry = {"timeout_s": 30, "max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05}
    retry.update(fields)
    return "llm.retry=" + json.dumps(retry)


def run_args(tmp_path: Path, name: str, overrides: list[str]) -> list[str]:
    """Overrides for a tiny run in tmp_path/name (later overrides win)."""
    return [*TINY_TASK, f"results_root={tmp_path}", f"run_name={name}",
            "budget.max_cost_usd=null", "report_every=1000", fast_retry(), *overrides]


def compose_run(tmp_path: Path, name: str, overrides: list[str]) -> dict:
    """The composed config mapping of a tiny run in tmp_path/name."""
    return compose(PROJECT_ROOT / "configs", "eplb_example", run_args(tmp_path, name, overrides))


def run_in_process(tmp_path: Path, name: str, overrides: list[str]) -> tuple[str, Path]:
    """Run the loop in this process; returns (stop reason, run folder)."""
    config = run_config_from_dict(compose_run(tmp_path, name, overrides))
    run_dir = tmp_path / name
    run_dir.mkdir(parents=True, exist_ok=True)
    models = [m for m in config.llm.models if is_configured(m)]
    evolution = Evolution(config, run_dir, PROJECT_ROOT, models, results_root=tmp_path)
    return evolution.run(), run_dir


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment without OpenAI settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(extra)
    return env


def run_evo(args: list[str], env: dict[str, str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
    """`python run_evo.py ARGS` in the project root, output captured."""
    return subprocess.run([sys.executable, "run_evo.py", *args], cwd=PROJECT_ROOT,
                          env=env if env is not None else subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- replies


def request_format(request: dict) -> str:
    """'diff' if the request asks for SEARCH/REPLACE edits, else 'full' (full or cross)."""
    system = request["messages"][0]["content"]
    return "diff" if "SEARCH/REPLACE edits" in system else "full"


def user_text(request: dict) -> str:
    return request["messages"][-1]["content"]


def fingerprint(request: dict) -> str:
    """What identifies a request across runs: format, temperature, programs shown, failures.

    Metrics and evaluator feedback are left out: they contain measured times.
    """
    user = user_text(request)
    titles = re.findall(r"^## Program (\S+)", user, re.MULTILINE)
    failures = re.findall(r"^- generation .*$", user, re.MULTILINE)
    return f"{request_format(request)}|{request.get('temperature')}|{titles}|{failures}"


def number_of(request: dict) -> int:
    """A number derived only from the request's fingerprint."""
    return int(hashlib.sha256(fingerprint(request).encode()).hexdigest()[:8], 16) % 10**6


def _edit(search: list[str], replace: list[str]) -> str:
    return "\n".join(["<<<<<<< SEARCH", *search, "=======", *replace, ">>>>>>> REPLACE"])


def diff_reply(n: int, global_policy: bool = False) -> str:
    """A valid SEARCH/REPLACE edit adding the statement `_unused = n` (distinct code per n).

    With global_policy the child always uses the global policy, which balances the tiny
    task's load better than the seed's hierarchical one (a higher score).
    """
    if global_policy:
        edit = _edit([WEIGHT_LINE], [WEIGHT_LINE, "    num_groups, num_nodes = 1, 1",
                                     f"    _unused = {n}"])
    else:
        edit = _edit([PACK_LINE], [PACK_LINE, f"    _unused = {n}"])
    return f"Idea: a harmless tweak number {n}.\n\n{edit}\n"


def full_block(n: int, global_policy: bool = False, hang: bool = False) -> str:
    """The seed's EVOLVE block with `_unused = n` added (and optionally a policy change)."""
    body = INITIAL_BLOCK.replace(PACK_LINE, f"{PACK_LINE}\n    _unused = {n}")
    if global_policy:
        body = body.replace(WEIGHT_LINE, f"{WEIGHT_LINE}\n    num_groups, num_nodes = 1, 1")
    if hang:
        body = body.replace(WEIGHT_LINE, f"{WEIGHT_LINE}\n    while True:\n        pass")
    return body


def full_reply(n: int, global_policy: bool = False, hang: bool = False) -> str:
    block = full_block(n, global_policy, hang)
    return f"A full rewrite, variant {n}.\n\n```python\n{block}```\n"


def valid_reply(request: dict, n: int, global_policy: bool = False) -> str:
    """A valid, distinct child in the format the request asks for."""
    if request_format(request) == "diff":
        return diff_reply(n, global_policy)
    return full_reply(n, global_policy)


NO_CODE_REPLY = "I have thought hard about it and the current program is already optimal."

MALFORMED_DIFF_REPLY = (
    "Faster packing.\n\n"
    + _edit(["    packs = make_some_packs(weight)", "    return packs.sorted_by_load()"],
            ["    return None"])
    + "\n"
)


def hang_reply(request: dict) -> str:
    """A child whose rebalance_experts never returns."""
    if request_format(request) == "diff":
        return _edit([WEIGHT_LINE], [WEIGHT_LINE, "    while True:", "        pass"]) + "\n"
    return full_reply(0, hang=True)


def deterministic_responder(request: dict) -> str:
    """Reply derived only from the request's fingerprint: some failures, some better children."""
    n = number_of(request)
    if n % 4 == 0:
        return NO_CODE_REPLY
    return valid_reply(request, n, global_policy=n % 3 == 0)


# ---------------------------------------------------------------- results


def connect_ro(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    return conn


def query(db_path: Path, sql: str, params: tuple = ()) -> list[dict]:
    """Query a run's database read-only; rows as dicts."""
    conn = connect_ro(db_path)
    try:
        return [dict(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def programs(run_dir: Path) -> list[dict]:
    """Every program row, by generation then id (not by finishing order)."""
    return query(run_dir / "evolution.db", "SELECT * FROM programs ORDER BY generation, id")


def children(run_dir: Path) -> list[dict]:
    """Non-migrant rows of generations >= 1."""
    return [p for p in programs(run_dir) if p["generation"] >= 1 and p["patch_type"] != "migrant"]


def llm_calls(run_dir: Path) -> list[dict]:
    return query(run_dir / "evolution.db", "SELECT * FROM llm_calls ORDER BY id")


def completed_generations(db_path: Path) -> set[int]:
    """Finished generations of a (possibly running) run; empty if the DB is not readable yet."""
    try:
        found = query(db_path, "SELECT DISTINCT generation FROM programs "
                              "WHERE generation >= 1 AND patch_type != 'migrant'")
    except sqlite3.Error:
        return set()
    return {r["generation"] for r in found}


def lineage(run_dir: Path) -> list[tuple]:
    """(generation, island, parent_id, patch_type, code_hash, valid) of each row, in order."""
    return [(p["generation"], p["island"], p["parent_id"], p["patch_type"], p["code_hash"],
             p["valid"]) for p in programs(run_dir)]


def wait_for(condition, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def stray_candidates(running: bool = True) -> list[int]:
    """Pids of this project's sandboxed processes left behind: orphans adopted by init
    (templates or candidates whose evaluator died without taking them along) and, with
    `running`, candidates still alive under a template (a template's own children)."""
    template = str(PROJECT_ROOT / "evolve" / "forkserver.py")
    found = []
    for proc in psutil.process_iter(["cmdline", "status", "ppid"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or \
                    template not in (proc.info["cmdline"] or ()):
                continue
            orphan = proc.info["ppid"] == 1
            if orphan or (running and template in psutil.Process(proc.info["ppid"]).cmdline()):
                found.append(proc.pid)
        except psutil.Error:
            pass
    return found
