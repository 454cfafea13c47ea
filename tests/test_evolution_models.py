"""Several models in one run: the bandit tries each, credits improvements to the right one,
and fixed weights send every request to the weighted model. Real openai client against the
scripted server on 127.0.0.1; the tiny task of evo_helpers."""

from __future__ import annotations

import json

import pandas as pd
from evo_helpers import KEY_ENV, NO_SPEED, llm_calls, programs, run_in_process, valid_reply
from llm_server import llm_server  # noqa: F401

GENERATIONS = 6


def two_models(server, good_weight: float = 1.0, bad_weight: float = 1.0) -> str:
    """`good` answers with the global policy (an improvement); `bad` answers with no code."""
    models = [{"name": name, "base_url": server.base_url, "api_key_env": KEY_ENV,
               "temperatures": [0.5], "max_tokens": 2048, "context_window": 64000,
               "price_in_per_m": price, "price_out_per_m": 0.0, "weight": weight}
              for name, price, weight in (("good", 1.0, good_weight), ("bad", 2.0, bad_weight))]
    return "llm.models=" + json.dumps(models)


def responder_for(server):
    def respond(request: dict) -> str:
        if request["model"] == "good":
            return valid_reply(request, len(server.requests), global_policy=True)
        return "I would rather not change anything."
    return respond


def run(tmp_path, server, name: str, overrides: list[str]):
    server.responder = responder_for(server)
    reason, run_dir = run_in_process(tmp_path, name, [
        f"evolution.generations={GENERATIONS}", "evolution.num_islands=1",
        "evolution.max_in_flight=1", "evolution.patch_types={diff: 1.0}", *NO_SPEED,
        *overrides])
    assert reason == "finished"
    return run_dir


def test_bandit_tries_both_models_and_credits_the_improving_one(tmp_path, llm_server,  # noqa: F811
                                                                 monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    # little exploration, so that six generations show the rewards steering the choice
    run_dir = run(tmp_path, llm_server, "ucb", [two_models(llm_server), "llm.selector=ucb",
                                                "llm.exploration=0.01"])
    calls = llm_calls(run_dir)
    assert [c["generation"] for c in calls] == list(range(1, GENERATIONS + 1))
    # untried models first, in list order; the request names the chosen model
    assert [c["model"] for c in calls[:2]] == ["good", "bad"]
    assert [r["model"] for r in llm_server.requests] == [c["model"] for c in calls]
    rows = {p["generation"]: p for p in programs(run_dir) if p["generation"] > 0}
    for call in calls:
        row = rows[call["generation"]]
        assert row["model"] == call["model"]
        assert bool(row["valid"]) == (call["model"] == "good"), row
    # the bandit learns: after both are tried, the improving model is asked more often
    assert [c["model"] for c in calls[2:]] == ["good"] * (GENERATIONS - 2)
    table = pd.read_csv(run_dir / "llm.csv").set_index("model")
    assert table.loc["good", "calls"] + table.loc["bad", "calls"] == GENERATIONS
    assert table.loc["good", "improvements"] >= 1 and table.loc["bad", "improvements"] == 0
    assert table.loc["bad", "cost"] > 0 and table.loc["good", "cost"] > 0


def test_fixed_weights_send_every_request_to_the_weighted_model(tmp_path,
                                                                 llm_server,  # noqa: F811
                                                                 monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    run_dir = run(tmp_path, llm_server, "fixed", [two_models(llm_server, 1.0, 0.0),
                                                  "llm.selector=fixed"])
    assert {c["model"] for c in llm_calls(run_dir)} == {"good"}
    assert {r["model"] for r in llm_server.requests} == {"good"}
