"""End-to-end runs of the evolution loop against a real scripted OpenAI-compatible server.

Every run uses a tiny EPLB task (see evo_helpers.TINY_TASK); candidates are evaluated for
real, in sandboxes, through the engine's worker pool.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time

import pandas as pd
from evo_helpers import (
    KEY_ENV,
    MALFORMED_DIFF_REPLY,
    NO_CODE_REPLY,
    NO_SPEED,
    TINY_TASK,
    children,
    deterministic_responder,
    diff_reply,
    fast_retry,
    fingerprint,
    hang_reply,
    lineage,
    llm_calls,
    model_override,
    programs,
    query,
    request_format,
    run_evo,
    run_in_process,
    stray_candidates,
    subprocess_env,
    user_text,
    valid_reply,
    wait_for,
)
from llm_server import Reply, ScriptedLLMServer, llm_server  # noqa: F401


def sequential(generations: int, islands: int = 1) -> list[str]:
    return [f"evolution.generations={generations}", f"evolution.num_islands={islands}",
            "evolution.max_in_flight=1"]


def by_generation(run_dir) -> dict[int, dict]:
    found = {}
    for p in children(run_dir):
        assert p["generation"] not in found, f"two rows for generation {p['generation']}"
        found[p["generation"]] = p
    return found


# ---------------------------------------------------------------- 1. reply kinds, reports


def test_reply_kinds_are_recorded_and_reported(tmp_path, llm_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv(KEY_ENV, "sk-test")
    plan = ["valid", "nocode", "malformed", "valid", "valid", "valid", "valid"]
    served: list[str] = []  # kind of each request, in order (one generation at a time)

    def responder(request):
        fmt = request_format(request)
        kind = plan.pop(0) if plan else "valid"
        if kind == "malformed" and fmt != "diff":  # only a diff can have a bad SEARCH
            plan.insert(0, kind)
            kind = "valid"
        served.append(kind)
        if kind == "nocode":
            return NO_CODE_REPLY
        if kind == "malformed":
            return MALFORMED_DIFF_REPLY
        return valid_reply(request, 100 + len(served))

    llm_server.responder = responder
    generations = 7
    reason, run_dir = run_in_process(tmp_path, "kinds", [
        *sequential(generations), "evolution.seed=0",  # seed 0: diff, full and cross occur
        "evolution.patch_types={diff: 0.5, full: 0.3, cross: 0.2}",
        model_override(llm_server, price_in_per_m=3.0, price_out_per_m=15.0)])
    assert reason == "finished"

    # generation cap: exactly one child per generation 1..N, nothing more
    rows = by_generation(run_dir)
    assert sorted(rows) == list(range(1, generations + 1))
    assert all(p["model"] == "m1" for p in rows.values())

    # one call per generation, in order; map each to the reply kind it was served
    calls = llm_calls(run_dir)
    assert [c["generation"] for c in calls] == list(range(1, generations + 1))
    assert len(llm_server.requests) == generations
    kinds = {}
    for call, request, kind in zip(calls, llm_server.requests, served, strict=True):
        assert call["user"] == user_text(request)
        kinds[call["generation"]] = (kind, request_format(request))
    assert "malformed" not in plan, "no diff request came for the malformed reply"

    # tokens come from the server's usage; cost uses the configured prices
    for call, request in zip(calls, llm_server.requests, strict=True):
        prompt = call["system"] + call["user"]
        assert call["prompt_tokens"] == math.ceil(len(prompt) / 4) > 0
        assert call["completion_tokens"] == math.ceil(len(call["reply"]) / 4) > 0
        expected = (call["prompt_tokens"] * 3.0 + call["completion_tokens"] * 15.0) / 1e6
        assert math.isclose(call["cost"], expected, rel_tol=1e-9)
        assert call["attempts"] == 1 and call["error"] is None
        assert call["model"] == "m1" and call["temperature"] in (0.4, 0.8)
        assert request["temperature"] == call["temperature"]

    seen_valid = set()
    for g, p in rows.items():
        kind, fmt = kinds[g]
        assert p["patch_type"] == "diff" if fmt == "diff" else p["patch_type"] in ("full", "cross")
        if p["patch_type"] == "cross":
            assert p["other_parent_id"] and p["other_parent_id"] != p["parent_id"]
        if kind == "valid":
            assert p["valid"] == 1 and p["score"] > 0 and p["error"] is None, p
            assert p["outcome"] == "valid"
            assert "    _unused = " in p["code"]
            seen_valid.add(p["patch_type"])
        else:
            assert p["valid"] == 0 and p["score"] is None and p["code"] == ""
            assert p["error"].startswith("unusable reply: ")
            assert p["outcome"] == "no_patch"
        if kind == "nocode":
            wanted = "no SEARCH/REPLACE block" if fmt == "diff" else "no code block"
            assert wanted in p["error"]
        if kind == "malformed":
            assert "does not match any lines" in p["error"]
            assert "closest lines" in p["error"]
    assert seen_valid == {"diff", "full", "cross"}

    # each failure is shown to the model in a later prompt of its island
    failed = [g for g, p in rows.items() if not p["valid"]]
    assert len(failed) == 2
    for g in failed:
        p = rows[g]
        label = f"generation {g} ({p['patch_type']}, m1)"
        first_line = p["error"].splitlines()[0]
        later = [c for c in calls if c["generation"] > g]
        assert later and any(label in c["user"] and first_line in c["user"] for c in later)
        assert not any(label in c["user"] for c in calls if c["generation"] <= g)

    # reports agree with the database
    everything = programs(run_dir)
    own_valid = [p for p in everything if p["patch_type"] != "migrant" and p["valid"]]
    ranked = sorted(own_valid, key=lambda p: (-p["score"], p["generation"]))
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert list(board["id"]) == [p["id"] for p in ranked]
    assert list(board["rank"]) == list(range(1, len(ranked) + 1))
    assert list(board["score"]) == [p["score"] for p in ranked]
    # reference policies are ranked on the leaderboard but are not the run's best
    assert {p["id"] for p in ranked if p["patch_type"] == "reference"} == {
        "ref-deepseek_global", "ref-no_replication", "ref-ema_hierarchical",
        "ref-waterfill_lpt", "ref-flashlb_hotness", "ref-swift_bounded"}
    evolved = [p for p in ranked if p["patch_type"] != "reference"]
    assert (run_dir / "best" / "program.py").read_text() == evolved[0]["code"]
    best = json.loads((run_dir / "best" / "metrics.json").read_text())
    assert best["id"] == evolved[0]["id"]

    gens = pd.read_csv(run_dir / "generations.csv")
    assert list(gens["generation"]) == list(range(0, generations + 1))
    assert list(gens["valid"])[1:] == [rows[g]["valid"] for g in range(1, generations + 1)]
    cost_of = {c["generation"]: c["cost"] for c in calls}
    for record in gens.to_dict("records")[1:]:
        assert math.isclose(record["cost"], cost_of[record["generation"]], rel_tol=1e-9)
    assert math.isclose(gens["cost_so_far"].iloc[-1], sum(cost_of.values()), rel_tol=1e-9)

    llm = pd.read_csv(run_dir / "llm.csv")
    assert list(llm["model"]) == ["m1"]
    assert llm["calls"].iloc[0] == generations and llm["failures"].iloc[0] == 0
    assert llm["children"].iloc[0] == generations
    assert llm["prompt_tokens"].iloc[0] == sum(c["prompt_tokens"] for c in calls)
    assert math.isclose(llm["cost"].iloc[0], sum(cost_of.values()), rel_tol=1e-9)

    pareto = pd.read_csv(run_dir / "pareto.csv")
    assert len(pareto) >= 1 and set(pareto["id"]) <= set(board["id"])

    assert (run_dir / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    overall = pd.read_csv(tmp_path / "leaderboard.csv", dtype={"run": str})
    mine = overall[overall["run"] == "kinds"]
    assert len(mine) == 1
    assert mine["generations"].iloc[0] == generations
    assert math.isclose(mine["best_score"].iloc[0], evolved[0]["score"])
    assert math.isclose(mine["cost"].iloc[0], sum(cost_of.values()), rel_tol=1e-9)


# ---------------------------------------------------------------- 2. API errors and timeouts


def test_timeouts_and_server_errors_fail_the_generation(tmp_path, llm_server,  # noqa: F811
                                                        monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    script = [Reply.slow(3.0), Reply.server_error(500, "boom")]

    def responder(request):
        n = 200 + len(llm_server.requests)
        if script:
            reply = script.pop(0)
            if reply.status == 200:  # the slow one: valid, if it ever arrived in time
                reply.content = valid_reply(request, n)
            return reply
        return valid_reply(request, n)

    llm_server.responder = responder
    reason, run_dir = run_in_process(tmp_path, "errors", [
        *sequential(3), model_override(llm_server),
        fast_retry(timeout_s=0.5, max_retries=0)])
    assert reason == "finished"

    rows = by_generation(run_dir)
    calls = {c["generation"]: c for c in llm_calls(run_dir)}
    assert sorted(rows) == sorted(calls) == [1, 2, 3]
    assert len(llm_server.requests) == 3
    # generation 1: the reply comes after the client's timeout
    slow = calls[1]
    assert slow["reply"] is None and slow["attempts"] == 1
    assert "timeout after 0.5s" in slow["error"]
    assert 0.4 < slow["latency_s"] < 2.5  # gave up without waiting for the 3 s reply
    assert rows[1]["valid"] == 0 and rows[1]["error"].startswith("LLM call failed: timeout")
    # generation 2: HTTP 500 with no retry left
    assert calls[2]["reply"] is None and "HTTP 500 server error" in calls[2]["error"]
    assert "boom" in calls[2]["error"] and "boom" in rows[2]["error"]
    assert rows[1]["patch_type"] in ("diff", "full", "cross") and rows[2]["model"] == "m1"
    # the run went on
    assert calls[3]["reply"] and rows[3]["valid"] == 1
    assert "LLM call failed" in user_text(llm_server.requests[2])  # failures are shown


def test_retries_then_success_record_attempts(tmp_path, llm_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv(KEY_ENV, "sk-test")
    llm_server.enqueue(Reply.rate_limited(), Reply.server_error(502), Reply.rate_limited(0.01))
    llm_server.responder = lambda request: valid_reply(request, 300 + len(llm_server.requests))
    reason, run_dir = run_in_process(tmp_path, "retries", [
        *sequential(2), model_override(llm_server), fast_retry(max_retries=4)])
    assert reason == "finished"
    calls = {c["generation"]: c for c in llm_calls(run_dir)}
    assert calls[1]["attempts"] == 4 and calls[1]["reply"] and calls[1]["error"] is None
    assert calls[2]["attempts"] == 1
    assert all(p["valid"] == 1 for p in children(run_dir))
    assert len(llm_server.requests) == 5


# ---------------------------------------------------------------- 3. a candidate that hangs


def test_hanging_candidate_is_killed_and_run_goes_on(tmp_path, llm_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv(KEY_ENV, "sk-test")
    replies = iter([hang_reply, lambda r: valid_reply(r, 400)])
    llm_server.responder = lambda request: next(replies)(request)
    reason, run_dir = run_in_process(tmp_path, "hang", [
        *sequential(2), model_override(llm_server), "task.limits.timeout_s=6"])
    assert reason == "finished"
    rows = by_generation(run_dir)
    hung, after = rows[1], rows[2]
    assert hung["valid"] == 0 and "while True" in hung["code"]
    assert "time limit exceeded" in hung["error"] and "6 s" in hung["error"]
    assert after["valid"] == 1  # the run went on
    assert stray_candidates() == []


def test_watchdog_kills_a_stuck_evaluation(tmp_path, llm_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv(KEY_ENV, "sk-test")
    replies = iter([hang_reply, lambda r: valid_reply(r, 450)])
    llm_server.responder = lambda request: next(replies)(request)
    # the task would allow 300 s; the engine's watchdog steps in after 20 s (ample for
    # the honest generation 2 even on a loaded machine, where a cold sandbox start plus
    # its evaluation once took longer than the 3 s this test used to allow)
    started = time.monotonic()
    reason, run_dir = run_in_process(tmp_path, "watchdog", [
        *sequential(2), model_override(llm_server), "task.limits.timeout_s=300",
        "task.limits.call_timeout_s=300", "evaluation.watchdog_s=20"])
    assert reason == "finished"
    assert time.monotonic() - started < 300  # the watchdog, not the task's limit, ended it
    rows = by_generation(run_dir)
    assert rows[1]["valid"] == 0 and "exceeded the watchdog (20 s)" in rows[1]["error"]
    assert rows[2]["valid"] == 1  # a fresh pool evaluates the next candidate
    # the stuck worker and its sandboxed candidate are killed, not left spinning
    assert wait_for(lambda: not stray_candidates(), timeout=30), stray_candidates()


# ---------------------------------------------------------------- 4. islands and migration


def test_islands_and_ring_migration(tmp_path, llm_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv(KEY_ENV, "sk-test")
    count = iter(range(500, 10_000))
    # Every child uses the global policy: it beats the seed, so island bests migrate.
    llm_server.responder = lambda request: valid_reply(request, next(count), global_policy=True)
    generations = 7
    reason, run_dir = run_in_process(tmp_path, "islands", [
        *sequential(generations, islands=2), "evolution.migration_interval=2",
        "evolution.stagnation_patience=0", model_override(llm_server), *NO_SPEED])
    assert reason == "finished"
    everything = programs(run_dir)
    by_id = {p["id"]: p for p in everything}
    seed = by_id["seed"]
    assert by_id["seed-1"]["island"] == 1 and by_id["seed-1"]["code_hash"] == seed["code_hash"]

    own = children(run_dir)
    assert len(own) == generations and all(p["valid"] for p in own)
    assert all(p["score"] > seed["score"] for p in own)
    for p in own:
        assert p["island"] == (p["generation"] - 1) % 2
        parent = by_id[p["parent_id"]]
        assert parent["island"] == p["island"], (p["id"], parent["id"])
        assert parent["generation"] <= p["generation"] - 1

    migrants = [p for p in everything if p["patch_type"] == "migrant" and p["generation"] > 0]
    assert migrants, "no migration happened"
    for m in migrants:
        source = by_id[m["parent_id"]]
        assert m["generation"] % 2 == 0
        assert m["island"] == (source["island"] + 1) % 2
        assert m["code_hash"] == source["code_hash"] and m["code"] == source["code"]
        assert m["score"] == source["score"]
        assert source["generation"] <= m["generation"] - 1  # only finished programs move
    # an island never receives code it already holds
    held = {}
    for p in sorted(everything, key=lambda p: (p["generation"], p["id"])):
        key = (p["island"], p["code_hash"])
        if p["patch_type"] == "migrant" and p["generation"] > 0:
            assert key not in held, f"{p['id']} duplicates {held.get(key)}"
        held.setdefault(key, p["id"])


# ---------------------------------------------------------------- 5. budget caps


def test_cost_cap_stops_before_overspending(tmp_path, llm_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv(KEY_ENV, "sk-test")
    # Each call may cost at most max_tokens * $1000/M = $1 (the prompt is free), and the
    # server reports the whole max_tokens as used: every call costs exactly $1.
    llm_server.responder = lambda request: Reply(
        valid_reply(request, 600 + len(llm_server.requests)), completion_tokens=1000)
    reason, run_dir = run_in_process(tmp_path, "cost", [
        *sequential(6), "budget.max_cost_usd=2.5",
        model_override(llm_server, max_tokens=1000, price_out_per_m=1000.0)])
    assert "cost cap" in reason and "2.50" in reason
    calls = llm_calls(run_dir)
    total = sum(c["cost"] for c in calls)
    assert total <= 2.5
    assert len(calls) == 2 and math.isclose(total, 2.0)  # a third call could pass the cap
    assert len(llm_server.requests) == 2
    assert sorted(p["generation"] for p in children(run_dir)) == [1, 2]
    assert (run_dir / "leaderboard.csv").exists()


def test_wall_time_cap_stops_the_run(tmp_path, llm_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv(KEY_ENV, "sk-test")
    llm_server.responder = lambda request: valid_reply(request, 700 + len(llm_server.requests))
    reason, run_dir = run_in_process(tmp_path, "wall", [
        "evolution.generations=6", "evolution.max_in_flight=2",
        "budget.max_wall_s=0.05", model_override(llm_server)])
    assert "wall-time cap" in reason
    # seeding alone took longer than the cap: no generation was started, nothing was paid
    assert children(run_dir) == []
    assert llm_server.requests == []
    assert (run_dir / "leaderboard.csv").exists()


# ---------------------------------------------------------------- 6. offline operator


def test_offline_operator_without_endpoint(tmp_path):
    args = ["evolution.generations=3", "evolution.num_islands=2", f"results_root={tmp_path}",
            "run_name=offline", *TINY_TASK]
    done = run_evo(args, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert "No LLM endpoint is configured" in done.stderr
    assert "OFFLINE mutation operator" in done.stderr
    assert "finished" in done.stdout
    run_dir = tmp_path / "offline"
    own = children(run_dir)
    assert sorted(p["generation"] for p in own) == [1, 2, 3]
    assert all(p["model"] == "offline" and p["patch_type"] == "offline" for p in own)
    assert llm_calls(run_dir) == []
    for name in ("leaderboard.csv", "generations.csv", "llm.csv", "pareto.csv",
                 "best/program.py", "plot.png", "config.yaml", "run.log"):
        assert (run_dir / name).is_file(), name
    assert "offline mode" in (run_dir / "run.log").read_text()
    assert (tmp_path / "leaderboard.csv").is_file()

    again = run_evo(args, env=subprocess_env())  # the folder holds a run: refuse
    assert again.returncode == 2 and "--resume" in again.stderr


# ---------------------------------------------------------------- 7. reproducibility


def _jittery(responder):
    """The same replies, each after a random delay (so completion order varies)."""
    rng = random.Random()
    lock = threading.Lock()

    def answer(request):
        with lock:
            delay = rng.uniform(0.0, 0.4)
        return Reply(responder(request), delay_s=delay)

    return answer


def test_same_seed_same_run_other_seed_other_run(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    overrides = ["evolution.generations=7", "evolution.num_islands=1",
                 "evolution.max_in_flight=3", "evolution.migration_interval=0",
                 "evolution.patch_types={diff: 0.5, full: 0.3, cross: 0.2}", *NO_SPEED]
    results, prompts = {}, {}
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        with ScriptedLLMServer(_jittery(deterministic_responder)) as server:
            reason, run_dir = run_in_process(tmp_path, name, [
                *overrides, f"evolution.seed={seed}", model_override(server)])
            assert reason == "finished"
            results[name] = lineage(run_dir)
            prompts[name] = sorted(fingerprint(r) for r in server.requests)
            calls = llm_calls(run_dir)
            assert sorted(c["generation"] for c in calls) == list(range(1, 8))
    assert len([r for r in results["a"] if r[0] >= 1]) == 7
    assert any(r[5] == 0 for r in results["a"]), "the responder should cause a failure"
    assert len({r[4] for r in results["a"] if r[5]}) >= 3
    assert results["a"] == results["b"]
    assert prompts["a"] == prompts["b"]  # the same requests (up to measured times)
    strip = [(g, i, parent, kind) for g, i, parent, kind, _, _ in results["a"]]
    other = [(g, i, parent, kind) for g, i, parent, kind, _, _ in results["c"]]
    assert strip != other
    assert results["a"] != results["c"]
    assert prompts["a"] != prompts["c"]


def test_duplicates_do_not_depend_on_which_reply_comes_first(tmp_path, monkeypatch):
    """Two generations in flight produce the same code: it is evaluated once, the lower
    generation owns the result and the higher one is its duplicate, whichever reply comes
    first (the higher one may even be evaluated first: the lower one then takes its result)."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    outcomes = {}
    for slow_parent in ("seed", "seed-1"):  # island 0's request slow, then island 1's

        def responder(request, slow_parent=slow_parent):
            shown = re.findall(r"^## Program (\S+)", user_text(request), re.MULTILINE)
            return Reply(diff_reply(7), delay_s=3.5 if shown[0] == slow_parent else 0.0)

        with ScriptedLLMServer(responder) as server:
            reason, run_dir = run_in_process(tmp_path, f"dup-{slow_parent}", [
                "evolution.generations=2", "evolution.num_islands=2",
                "evolution.max_in_flight=2", "evolution.patch_types={diff: 1.0}",
                model_override(server), *NO_SPEED])
        assert reason == "finished"
        outcomes[slow_parent] = [(row["id"], row["outcome"], row["duplicate_of"], row["valid"],
                                  row["score"]) for row in children(run_dir)]
        own = children(run_dir)
        assert [p["parent_id"] for p in own] == ["seed", "seed-1"]
        assert own[0]["code_hash"] == own[1]["code_hash"]  # the same child twice
        assert own[1]["metrics"] == own[0]["metrics"]  # the result is reused, not remeasured
        assert "not evaluated again" in own[1]["error"]
        evaluated = [g for g in (1, 2) if (run_dir / "programs" / f"g{g:06d}.py").exists()]
        assert len(evaluated) == 1  # one evaluation: its file is written when it is submitted
    # the slow island-0 request (generation 1) came second, yet generation 1 owns the result
    assert outcomes["seed"] == outcomes["seed-1"]
    assert [row[:4] for row in outcomes["seed"]] == [
        ("g000001", "valid", None, 1), ("g000002", "duplicate", "g000001", 0)]
    assert outcomes["seed"][0][4] > 0 and outcomes["seed"][1][4] is None


def test_failures_are_shown_in_generation_order(tmp_path, monkeypatch):
    """Generation 1 fails after generation 2; later prompts still list generation 1 first."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    count = iter(range(800, 10_000))

    def responder(request):
        if "Recent failed attempts" in user_text(request):
            return valid_reply(request, next(count))
        # no failure shown yet: generations 1 (diff, answered late) and 2 (full): no code
        return Reply(NO_CODE_REPLY, delay_s=2.0 if request_format(request) == "diff" else 0.0)

    with ScriptedLLMServer(responder) as server:
        # seed 4 draws diff for generation 1 and full for generation 2
        reason, run_dir = run_in_process(tmp_path, "order", [
            "evolution.generations=4", "evolution.num_islands=1", "evolution.max_in_flight=2",
            "evolution.seed=4", "evolution.patch_types={diff: 0.5, full: 0.5}",
            model_override(server)])
        requests = [user_text(r) for r in server.requests]
    assert reason == "finished"
    rows = by_generation(run_dir)
    assert (rows[1]["patch_type"], rows[2]["patch_type"]) == ("diff", "full")
    assert not rows[1]["valid"] and not rows[2]["valid"]
    finish_order = [r["id"] for r in query(run_dir / "evolution.db",
                                             "SELECT id FROM programs ORDER BY rowid")]
    assert finish_order.index("g000002") < finish_order.index("g000001")
    both = [u for u in requests if "- generation 1 (" in u and "- generation 2 (" in u]
    assert both, "no prompt showed both failures"
    for user in both:
        assert user.index("- generation 1 (") < user.index("- generation 2 (")


# ---------------------------------------------------------------- 9. configuration errors


def test_config_errors_exit_2(tmp_path):
    bad = run_evo(["evolution.bogus=1", f"results_root={tmp_path}"])
    assert bad.returncode == 2
    assert "evolution.bogus" in bad.stderr
    for key in ("generations", "num_islands", "max_in_flight", "migration_interval"):
        assert key in bad.stderr
    assert not any(tmp_path.iterdir())  # nothing was created

    empty = tmp_path / "not-a-run"
    empty.mkdir()
    resumed = run_evo(["--resume", str(empty)])
    assert resumed.returncode == 2
    assert "no config.yaml" in resumed.stderr
    assert not (empty / "evolution.db").exists()
