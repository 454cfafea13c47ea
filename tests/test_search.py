"""End-to-end: a search that does not repeat itself (ideas, memory, directions, duplicates,
LLM summary, adaptive patch types), through the real loop and the scripted server."""

from __future__ import annotations

import re
import threading

import pandas as pd
import yaml
from evo_helpers import (
    KEY_ENV,
    NO_CODE_REPLY,
    NO_SPEED,
    PROJECT_ROOT,
    children,
    diff_reply,
    full_block,
    full_reply,
    llm_calls,
    model_override,
    programs,
    request_format,
    run_in_process,
    user_text,
)
from llm_server import Reply, ScriptedLLMServer

DIRECTIONS = yaml.safe_load((PROJECT_ROOT / "configs/task/eplb.yaml").read_text())[
    "engine"]["directions"]


def titles(request: dict) -> list[str]:
    return re.findall(r"^## Program (\S+)", user_text(request), re.MULTILINE)


def direction_of(request: dict) -> str | None:
    """The name of the task direction whose text the request carries."""
    found = [name for name, text in DIRECTIONS.items() if text.strip() in user_text(request)]
    assert len(found) <= 1
    return found[0] if found else None


def test_requests_in_flight_together_carry_different_prompts(tmp_path, monkeypatch):
    """Four requests start at once from the same parent: their prompts differ (the task's
    directions), and without directions too (each names its slot among those in flight)."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    for name, extra in (("directions", []), ("none", ["task.engine.directions={}"])):
        together = threading.Barrier(4, timeout=60)  # the first four answer only together
        concurrent: list[dict] = []
        lock = threading.Lock()
        count = iter(range(1000, 2000))

        def responder(request, together=together, concurrent=concurrent, lock=lock,
                      count=count):
            with lock:
                first = len(concurrent) < 4
                if first:
                    concurrent.append(request)
                n = next(count)
            if first:
                together.wait()  # all four are under way at this moment
            return diff_reply(n) if request_format(request) == "diff" else full_reply(n)

        with ScriptedLLMServer(responder) as server:
            reason, run_dir = run_in_process(tmp_path, name, [
                "evolution.generations=8", "evolution.num_islands=1",
                "evolution.max_in_flight=4", model_override(server), *NO_SPEED, *extra])
            requests = list(server.requests)
        assert reason == "finished"
        assert len(concurrent) == 4
        assert {titles(r)[0] for r in concurrent} == {"seed"}  # the same parent for all four
        prompts = [r["messages"][0]["content"] + user_text(r) for r in concurrent]
        assert len(set(prompts)) == 4
        # any two generations fewer than max_in_flight apart may be in flight together
        calls = sorted(llm_calls(run_dir), key=lambda c: c["generation"])
        for a in calls:
            for c in calls:
                if 0 < c["generation"] - a["generation"] < 4:
                    assert c["system"] + c["user"] != a["system"] + a["user"]
        rows = {p["generation"]: p for p in children(run_dir)}
        by_prompt = {user_text(r): r for r in requests}
        for call in calls:
            stored = rows[call["generation"]]["direction"]
            if name == "directions":
                assert stored in DIRECTIONS and direction_of(by_prompt[call["user"]]) == stored
            else:
                assert stored == "" and direction_of(by_prompt[call["user"]]) is None
                assert "This is request " in call["user"]


def renamed_copy(n: int) -> str:
    """`full_block(n)` with a local variable renamed, a docstring dropped and a comment
    added: the same program, not the same text."""
    block = full_block(n).replace("per_pack", "chunk")
    block = block.replace('    """Row-wise inverse of a batch of permutations."""\n', "")
    block = block.replace("    rows, n = weight.shape\n    chunk", "    rows, n = weight.shape\n"
                          "    # how many items each pack holds\n    chunk", 1)
    assert block != full_block(n) and "# how many items" in block
    return f"Idea: the same packing, tidied.\n\n```python\n{block}```\n"


def test_exact_structural_and_in_flight_duplicates_are_never_evaluated(tmp_path, monkeypatch):
    """Island 0 proposes a program; island 1, at the same time, the same program renamed
    (its reply first, so it is evaluated first); later both again. One evaluation in all:
    generation 1 owns it, every other row is its duplicate and reuses its result."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    served = []

    def responder(request):
        served.append(request)
        if titles(request)[0] == "seed-1":
            return renamed_copy(7)
        return Reply(full_reply(7), delay_s=2.0 if len(served) == 1 else 0.0)

    with ScriptedLLMServer(responder) as server:
        reason, run_dir = run_in_process(tmp_path, "dups", [
            "evolution.generations=4", "evolution.num_islands=2", "evolution.max_in_flight=2",
            "evolution.migration_interval=0", "evolution.patch_types={full: 1.0}",
            model_override(server), *NO_SPEED])
    assert reason == "finished"
    rows = {p["generation"]: p for p in children(run_dir)}
    assert [rows[g]["outcome"] for g in (1, 2, 3, 4)] == ["valid", "duplicate", "duplicate",
                                                           "duplicate"]
    assert all(rows[g]["duplicate_of"] == "g000001" for g in (2, 3, 4))
    assert "(the same code)" in rows[3]["error"]
    assert "comments, docstrings and local names" in rows[2]["error"]
    assert "comments, docstrings and local names" in rows[4]["error"]
    assert all(rows[g]["metrics"] == rows[1]["metrics"] for g in (2, 3, 4))
    assert rows[1]["idea"] == "A full rewrite, variant 7."  # no Idea: line: its first sentence
    assert rows[2]["idea"] == "the same packing, tidied."
    files = [g for g in (1, 2, 3, 4) if (run_dir / "programs" / f"g{g:06d}.py").exists()]
    assert len(files) == 1  # one evaluation
    # seed-1 is a copy of the seed: never shown beside it as an inspiration
    for request in served:
        shown = titles(request)
        assert not {"seed", "seed-1"} <= set(shown), shown


def test_numeric_variants_are_capped_per_island(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    numbers = iter(range(1, 100))
    with ScriptedLLMServer(lambda request: full_reply(next(numbers))) as server:
        reason, run_dir = run_in_process(tmp_path, "variants", [
            "evolution.generations=4", "evolution.num_islands=1", "evolution.max_in_flight=1",
            "evolution.patch_types={full: 1.0}", "evolution.literal_variants=2",
            model_override(server), *NO_SPEED])
    assert reason == "finished"
    rows = {p["generation"]: p for p in children(run_dir)}
    assert [rows[g]["outcome"] for g in (1, 2, 3, 4)] == ["valid", "valid", "duplicate",
                                                           "duplicate"]
    for g in (3, 4):
        assert rows[g]["duplicate_of"] == "g000001"
        assert "evolution.literal_variants" in rows[g]["error"]
        assert not (run_dir / "programs" / f"g{g:06d}.py").exists()


def test_ideas_are_stored_reported_and_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    numbers = iter(range(300, 400))
    plan = {2: "Idea: give up.\n" + NO_CODE_REPLY}

    def responder(request):
        n = next(numbers)
        if n - 299 in plan:
            return plan[n - 299]
        text = diff_reply(n) if request_format(request) == "diff" else full_reply(n)
        return text.replace("Idea: a harmless tweak", "Idea: tweak").replace(
            "A full rewrite, variant", "Idea: rewrite")

    with ScriptedLLMServer(responder) as server:
        reason, run_dir = run_in_process(tmp_path, "ideas", [
            "evolution.generations=5", "evolution.num_islands=1", "evolution.max_in_flight=1",
            "evolution.patch_types={diff: 0.5, full: 0.5}", model_override(server), *NO_SPEED])
        requests = [user_text(r) for r in server.requests]
    assert reason == "finished"
    rows = {p["generation"]: p for p in children(run_dir)}
    assert rows[2]["outcome"] == "no_patch" and rows[2]["idea"] == "give up."
    for g in (1, 3, 4, 5):
        assert re.fullmatch(r"(tweak number|rewrite) 3\d\d\.", rows[g]["idea"]), rows[g]["idea"]
    board = pd.read_csv(run_dir / "leaderboard.csv")
    ideas = dict(zip(board["id"], board["idea"].fillna(""), strict=True))
    assert all(ideas[f"g{g:06d}"] == rows[g]["idea"] for g in rows if rows[g]["valid"])
    # later prompts: the failure with its idea, the children's ideas and results, the ledger
    assert "idea: give up." in requests[2] and "# What earlier children" not in requests[0]
    for g, user in enumerate(requests[1:], start=2):
        shown = re.findall(r"^## Program (\S+)", user, re.MULTILINE)
        parent = shown[0]
        kids = [p for p in rows.values() if p["parent_id"] == parent and p["generation"] < g]
        for kid in kids:
            assert f"generation {kid['generation']} (" in user and kid["idea"] in user
        for other in shown[1:]:  # inspirations carry their idea
            if other.startswith("g0"):
                assert f"Idea: {rows[int(other[1:])]['idea']}" in user
    assert any("# Ideas tried on this island" in u for u in requests[1:])


def test_llm_summary_every_n_generations_is_paid_stored_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    numbers = iter(range(500, 600))

    def responder(request):
        n = next(numbers)
        if "You advise an evolutionary search" in request["messages"][0]["content"]:
            return f"- ADVICE {n}: pack the hottest experts first"
        return diff_reply(n) if request_format(request) == "diff" else full_reply(n)

    overrides = ["evolution.num_islands=1", "evolution.max_in_flight=1",
                 "evolution.summary_every=2", "evolution.patch_types={diff: 0.5, full: 0.5}",
                 *NO_SPEED]
    with ScriptedLLMServer(responder) as server:
        model = model_override(server, price_in_per_m=1.0, price_out_per_m=2.0)
        reason, run_dir = run_in_process(tmp_path, "summary",
                                         ["evolution.generations=5", model, *overrides])
        assert reason == "finished"
        # resumed with more generations: round 2 (generations 4-5) is reused, round 3 is new
        reason, run_dir = run_in_process(tmp_path, "summary",
                                         ["evolution.generations=6", model, *overrides])
    assert reason == "finished"
    calls = llm_calls(run_dir)
    summaries = [c for c in calls if c["purpose"] == "summary"]
    assert [c["generation"] for c in summaries] == [2, 4, 6]
    assert all(c["cost"] > 0 and "Ideas tried so far" in c["user"] for c in summaries)
    advice = {c["generation"]: c["reply"] for c in summaries}
    for call in calls:
        if call["purpose"] != "mutation":
            continue
        latest = max((g for g in advice if g <= call["generation"]), default=None)
        for g, text in advice.items():
            assert (text in call["user"]) == (g == latest), (call["generation"], g)
    llm = pd.read_csv(run_dir / "llm.csv")
    assert llm["calls"].iloc[0] == 6 + 3  # the same CSV as every other call
    assert abs(llm["cost"].iloc[0] - sum(c["cost"] for c in calls)) < 1e-12
    gens = pd.read_csv(run_dir / "generations.csv")
    assert abs(gens["cost_so_far"].iloc[-1] - sum(c["cost"] for c in calls)) < 1e-12


def test_patch_types_adapt_to_their_reward(tmp_path, monkeypatch):
    """Greedy UCB (exploration 0): each type tried once in order, then the one that gained."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    numbers = iter(range(700, 800))

    def responder(request):  # diff children gain (the global policy), full ones do not
        n = next(numbers)
        return diff_reply(n, global_policy=True) if request_format(request) == "diff" \
            else full_reply(n)

    with ScriptedLLMServer(responder) as server:
        reason, run_dir = run_in_process(tmp_path, "adapt", [
            "evolution.generations=4", "evolution.num_islands=1", "evolution.max_in_flight=1",
            "evolution.adaptive_patch_types=true", "llm.exploration=0.0",
            "evolution.patch_types={diff: 0.1, full: 0.9}", model_override(server), *NO_SPEED])
    assert reason == "finished"
    rows = {p["generation"]: p for p in children(run_dir)}
    assert [rows[g]["patch_type"] for g in (1, 2, 3, 4)] == ["diff", "full", "diff", "diff"]
    seed = next(p for p in programs(run_dir) if p["id"] == "seed")
    assert rows[1]["score"] > seed["score"] and rows[2]["score"] <= seed["score"] + 1e-12
