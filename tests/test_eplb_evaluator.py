"""The evaluator end to end: the baseline, misbehaving candidates, the protocol, timing.

Each test runs one sandboxed candidate on a small synthetic task (4 layers x 32
experts, 4 windows, two scenarios: hierarchical and global).
"""

import contextlib
import hashlib
import importlib.util
import json
import re
import time

import numpy as np
import psutil
import pytest
import torch
from candidate_helpers import CANDIDATES, INITIAL, candidate_file, printed_calls

import initial
from eplb import placement
from eplb.config import task_config_from_dict
from eplb.evaluator import evaluate_program, load_windows
from eplb.synthetic import SyntheticSpec, generate
from eplb.workload import WorkloadError
from evolve import sandbox

SCENARIOS = [
    {"name": "hier", "num_replicas": 40, "num_groups": 4, "num_nodes": 2, "num_gpus": 8},
    {"name": "glob", "num_replicas": 48, "num_groups": 4, "num_nodes": 3, "num_gpus": 6},
]


def make_task(**changes):
    data = {
        "synthetic": {"steps": 400, "layers": 4, "experts": 32, "seed": 0},
        "rebalance_interval": 100,
        "scenarios": SCENARIOS,
        "timing": {"warmup": 1, "repeats": 2},
        "limits": {"timeout_s": 20, "memory_mb": 2048},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return task_config_from_dict(data)


def run(name: str, task=None, **kwargs) -> dict:
    with candidate_file(name) as path:
        result = evaluate_program(path, task or make_task(), **kwargs)
    assert set(result) == {"correct", "error", "metrics", "feedback", "output"}
    return result


def failed(name: str, task=None) -> str:
    result = run(name, task)
    assert result["correct"] is False
    assert isinstance(result["error"], str) and result["error"]
    assert "combined_score" not in result["metrics"]
    return result["error"]


# ---------------------------------------------------------------- the baseline

@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    results = tmp_path_factory.mktemp("baseline-results")
    task = make_task()
    return task, results, evaluate_program(INITIAL, task, results_dir=results)


def test_baseline_is_correct_and_scored(baseline):
    task, _, result = baseline
    assert result["correct"] is True and result["error"] is None
    metrics = result["metrics"]
    for key in ("balancedness_gpu", "balancedness_slot", "balancedness_node", "speed_score",
                "combined_score", "same_window_balancedness_gpu",
                "no_replication_balancedness_gpu"):
        assert 0 < metrics[key] <= 1, key
    assert metrics["combined_score"] == pytest.approx(
        (metrics["balancedness_gpu"] + metrics["speed_score"]) / 2)
    assert metrics["speed_score"] == pytest.approx(
        min(1.0, 0.02 / (metrics["time_ms_mean"] / 1000)))
    assert metrics["windows_scored"] == 3
    assert metrics["workload"] == "synthetic(seed=0)"
    assert metrics["forecast_loss_gpu"] == pytest.approx(
        metrics["same_window_balancedness_gpu"] - metrics["balancedness_gpu"])
    # Placing for the very window it is scored on can only help the baseline here;
    # replication beats no replication.
    assert metrics["same_window_balancedness_gpu"] > metrics["balancedness_gpu"]
    assert metrics["balancedness_gpu"] > metrics["no_replication_balancedness_gpu"]
    assert metrics["eval_seconds"] > 0
    assert set(metrics["scenarios"]) == {"hier", "glob"}
    means = [metrics["scenarios"][s]["balancedness_gpu"] for s in ("hier", "glob")]
    assert metrics["balancedness_gpu"] == pytest.approx(np.mean(means))
    for name, summary in metrics["scenarios"].items():
        assert summary["scenario"]["name"] == name
        windows = summary["per_window"]
        assert [w["window"] for w in windows] == [0, 1, 2]
        assert summary["balancedness_gpu"] == pytest.approx(
            np.mean([w["balancedness_gpu"] for w in windows]))
        for record in windows:
            assert 0 < record["balancedness_gpu"] <= 1
            assert record["time_ms"] > 0
        assert windows[0]["migration"] == 0
    assert "hier: balancedness_gpu" in result["feedback"]
    assert "glob: balancedness_gpu" in result["feedback"]


def test_baseline_scores_match_an_independent_replay(baseline):
    """Placement from window i (computed here, in-process) scored on window i + 1."""
    task, _, result = baseline
    _, windows = load_windows(task)
    assert windows.shape == (4, 4, 32)
    for spec in SCENARIOS:
        scenario = placement.Scenario(**spec)
        per_window = result["metrics"]["scenarios"][scenario.name]["per_window"]
        previous = None
        for i, record in enumerate(per_window):
            phy2log, _, _ = initial.rebalance_experts(
                torch.from_numpy(windows[i]), scenario.num_replicas, scenario.num_groups,
                scenario.num_nodes, scenario.num_gpus)
            phy2log = phy2log.numpy()
            counts = placement.replica_counts(phy2log, 32)
            ahead = placement.measure(windows[i + 1].astype(float), phy2log, counts, scenario)
            same = placement.measure(windows[i].astype(float), phy2log, counts, scenario)
            plain = placement.no_replication_balance(windows[i + 1].astype(float), scenario)
            assert record["balancedness_gpu"] == pytest.approx(ahead.gpu, rel=1e-12)
            assert record["balancedness_slot"] == pytest.approx(ahead.slot, rel=1e-12)
            assert record["balancedness_node"] == pytest.approx(ahead.node, rel=1e-12)
            assert record["same_window_balancedness_gpu"] == pytest.approx(same.gpu, rel=1e-12)
            assert record["no_replication_balancedness_gpu"] == pytest.approx(plain.gpu)
            assert record["migration"] == placement.migration(previous, phy2log)
            previous = phy2log


def test_baseline_result_files(baseline):
    _, results, result = baseline
    metrics = json.loads((results / "metrics.json").read_text())
    correct = json.loads((results / "correct.json").read_text())
    assert correct == {"correct": True, "error": None}
    assert metrics["combined_score"] == pytest.approx(result["metrics"]["combined_score"])
    assert metrics["scenarios"]["hier"]["per_window"][2]["window"] == 2
    assert not list(results.glob("*.tmp"))


def test_failure_result_files(tmp_path):
    result = run("raises", results_dir=tmp_path)
    assert result["correct"] is False
    assert "ValueError: candidate gave up on purpose" in result["error"]
    assert "rebalance_experts raised" in result["error"]
    assert "scenario hier, window 0" in result["error"]
    assert result["feedback"].startswith("The program failed")
    correct = json.loads((tmp_path / "correct.json").read_text())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert correct == {"correct": False, "error": result["error"]}
    assert metrics["combined_score"] is None and metrics["error"] == result["error"]


# ---------------------------------------------------------------- misbehaving candidates

def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _sandboxed_processes() -> list[psutil.Process]:
    """Every process below this test process's idle sandbox templates."""
    found = []
    for server in sandbox._IDLE:
        with contextlib.suppress(psutil.NoSuchProcess):
            found += psutil.Process(server.process.pid).children(recursive=True)
    return found


def test_hanging_candidate_is_killed(tmp_path):
    timeout = 4.0
    task = make_task(limits={"timeout_s": timeout, "call_timeout_s": 60})
    started = time.monotonic()
    result = run("hangs", task)
    elapsed = time.monotonic() - started
    assert result["correct"] is False
    assert "time limit exceeded: killed after 4 s" in result["error"]
    assert "scenario hier, window 0" in result["error"]
    assert "too slow: 0 of about 6 placements answered" in result["error"]
    assert elapsed >= timeout
    assert "could not start a process: PermissionError" in result["error"]  # its output
    assert [p for p in _sandboxed_processes() if not _gone(p.pid)] == []


def test_a_call_past_the_call_time_limit_is_killed():
    task = make_task(limits={"timeout_s": 120, "call_timeout_s": 1}, timing={"budget_s": 0})
    result = run("hangs", task)
    assert result["correct"] is False
    assert "call time limit exceeded: no answer within 1 s" in result["error"]
    assert [p for p in _sandboxed_processes() if not _gone(p.pid)] == []


def test_memory_hog_fails_with_a_memory_error():
    error = failed("memory_hog", make_task(limits={"memory_mb": 1024}))
    assert "memory" in error.lower()
    assert "rebalance_experts raised" in error  # the import itself fitted in the limit


def test_what_a_valid_candidate_prints_is_returned_unflushed_or_not(tmp_path):
    program = tmp_path / "chatty.py"
    program.write_text(INITIAL.read_text() + 'print("hello from the candidate")\n'
                       'print("no newline, no flush", end="")\n')
    result = run(program, results_dir=tmp_path / "out")
    assert result["correct"] is True, result["error"]
    assert "hello from the candidate" in result["output"]
    assert result["output"].endswith("no newline, no flush")
    assert (tmp_path / "out" / "output.txt").read_text() == result["output"]


def test_noisy_candidate_is_still_correct(baseline):
    result = run("noisy")
    assert result["correct"] is True, result["error"]
    expected = baseline[2]["metrics"]
    assert result["metrics"]["balancedness_gpu"] == pytest.approx(expected["balancedness_gpu"])


@pytest.mark.parametrize("name,text", [
    ("wrong_lists", "phy2log must be a torch.Tensor; got list"),
    ("wrong_numpy", "phy2log must be a torch.Tensor; got ndarray"),
    ("wrong_pair", "must return a tuple (phy2log, log2phy, logcnt); got tuple of length 2"),
])
def test_wrong_return_types(name, text):
    error = failed(name)
    assert text in error
    assert "TypeError" in error


def test_invalid_placement_names_the_rule():
    error = failed("invalid_placement")
    assert error.startswith("invalid placement (scenario hier, window 0)")
    assert "[logcnt]" in error and "(layer 1, index 3)" in error


def test_the_first_invalid_window_is_reported_though_the_next_call_was_under_way():
    """Window 1's answer is checked while the candidate works on window 2, which raises:
    the report is still window 1's invalid placement."""
    error = failed("invalid_then_raises")
    assert error.startswith("invalid placement (scenario hier, window 1)"), error
    assert "[logcnt]" in error and "raised" not in error


@pytest.mark.parametrize("reply_early", [False, True])
def test_answers_are_checked_while_the_candidate_works_on_the_next_window(monkeypatch,
                                                                          reply_early):
    """Every answer but a scenario's last is validated with the next request in flight
    (sent, its reply not yet read). A reply found waiting when the evaluator looks for
    it (a candidate faster than the check) makes it check first from then on."""
    in_flight = []
    awaiting = {"reply": False}  # a message sent, its reply not yet read
    send, receive = sandbox.Sandbox.send, sandbox.Sandbox.receive

    def counted_send(self, *args, **kwargs):
        awaiting["reply"] = True
        return send(self, *args, **kwargs)

    def counted_receive(self, *args, **kwargs):
        reply = receive(self, *args, **kwargs)
        awaiting["reply"] = False
        return reply

    validate = placement.validate

    def noted_validate(*args, **kwargs):
        in_flight.append(awaiting["reply"])
        return validate(*args, **kwargs)

    monkeypatch.setattr(sandbox.Sandbox, "send", counted_send)
    monkeypatch.setattr(sandbox.Sandbox, "receive", counted_receive)
    monkeypatch.setattr(placement, "validate", noted_validate)
    # whether a reply came while the evaluator was busy depends on the machine's load:
    # decided here
    monkeypatch.setattr(sandbox.Sandbox, "reply_waiting", lambda self: reply_early)
    result = evaluate_program(INITIAL, make_task())
    assert result["correct"], result["error"]
    # 3 scored windows per scenario, one call each: the last is checked after its reply
    expected = [False, False, False] if reply_early else [True, True, False]
    assert in_flight == expected * len(SCENARIOS)


def test_syntax_error(tmp_path):
    program = tmp_path / "broken.py"
    program.write_text("def rebalance_experts(weight, num_replicas:\n    return weight\n")
    error = failed(program)
    assert "loading the program failed" in error and "SyntaxError" in error


def test_missing_rebalance_experts():
    error = failed("no_function")
    assert "no callable rebalance_experts" in error


def test_sys_exit_on_import():
    error = failed("exits_on_import")
    assert "loading the program failed" in error and "SystemExit" in error


def test_os_exit_during_call():
    error = failed("hard_exit")
    assert "exited with code 7" in error
    assert "about to leave without a word" in error  # the output tail is shown


def test_harness_imports_are_blocked():
    error = failed("imports_harness")
    assert "may not import the harness package" in error and "eplb" in error


def test_api_keys_are_not_visible(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-eplb-test-not-a-real-key")
    monkeypatch.setenv("EPLB_TEST_TOKEN", "sk-eplb-test-token")
    # The candidate does notice a secret when one is in its environment ...
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        spec = importlib.util.spec_from_file_location("secrets_probe",
                                                      CANDIDATES / "reads_secrets.py")
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    # ... but the sandbox does not pass it on.
    result = run("reads_secrets")
    assert result["correct"] is True, result["error"]


def test_missing_program_is_a_candidate_failure(tmp_path):
    error = failed(tmp_path / "does_not_exist.py")
    assert "loading the program failed" in error


# ---------------------------------------------------------------- task problems

def test_impossible_scenario_is_a_task_error():
    bad = [{"name": "bad", "num_replicas": 30, "num_groups": 4, "num_nodes": 2,
            "num_gpus": 8}]
    with pytest.raises(ValueError, match="num_replicas 30 is not divisible by num_gpus 8"):
        evaluate_program(INITIAL, make_task(scenarios=bad))


def test_missing_workload_is_a_task_error(tmp_path):
    with pytest.raises(WorkloadError, match="not found"):
        evaluate_program(INITIAL, make_task(), workload=str(tmp_path / "none.json"))


# ---------------------------------------------------------------- protocol and timing

def test_candidate_only_ever_sees_the_current_window(tmp_path):
    """Calls arrive window by window, never the last one, each on a fresh copy."""
    steps = generate(SyntheticSpec(steps=350, layers=4, experts=32, seed=7))
    trace = tmp_path / "trace.npy"
    np.save(trace, steps)
    task = make_task()
    result = run("recorder", task, workload=str(trace))
    assert result["correct"] is True, result["error"]
    assert result["metrics"]["workload"] == "trace.npy"
    calls = printed_calls(result["output"])

    windows = steps[:300].reshape(3, 100, 4, 32).sum(axis=1, dtype=np.int64)
    digests = [hashlib.sha256(w.tobytes()).hexdigest() for w in windows]
    for spec in SCENARIOS:
        seen = [c for c in calls if c["replicas"] == spec["num_replicas"]]
        # a warm-up call on a decoy (never a window), then one call per window; no window 2
        decoy_sha, *called = [c["sha"] for c in seen]
        assert called == digests[:2] and decoy_sha not in digests
        assert [c["sum"] for c in seen[1:]] == [int(windows[0].sum()), int(windows[1].sum())]
        assert all(c["shape"] == [4, 32] and c["dtype"] == "torch.int64" for c in seen)
    assert [c["replicas"] for c in calls] == [40] * 3 + [48] * 3  # scenario by scenario
    assert len(result["metrics"]["scenarios"]["hier"]["per_window"]) == 2


def test_only_the_call_is_timed():
    result = run("slow")
    assert result["correct"] is True, result["error"]
    metrics = result["metrics"]
    for summary in metrics["scenarios"].values():
        for record in summary["per_window"]:
            # 50 ms of sleep; the 0.2 s import and the 0.3 s warm-up are not counted
            assert 50 <= record["time_ms"] < 100
    assert 50 <= metrics["time_ms"] < 90
    assert metrics["speed_score"] == pytest.approx(0.02 / (metrics["time_ms_mean"] / 1000))
    assert 0.2 < metrics["speed_score"] <= 0.4
    assert metrics["combined_score"] == pytest.approx(
        (metrics["balancedness_gpu"] + metrics["speed_score"]) / 2)


def test_a_pause_of_the_evaluator_is_not_charged_to_the_call(monkeypatch):
    """The evaluator stalls 0.3 s (a garbage collection, a preemption) while checking a
    window, so the next reply (50 ms of CPU) waits for it: that call is still charged
    about 50 ms, not the 0.3 s round trip."""
    from eplb import evaluator

    install = evaluator._Deployment.install

    def stalled(self, answer):
        install(self, answer)
        time.sleep(0.3)

    monkeypatch.setattr(evaluator._Deployment, "install", stalled)
    result = run("slow")
    assert result["correct"] is True, result["error"]
    for summary in result["metrics"]["scenarios"].values():
        for record in summary["per_window"]:
            assert 50 <= record["time_ms"] < 100, record


def test_a_slow_valid_program_is_timed_once_per_window_and_scored():
    task = make_task(timing={"warmup": 2, "budget_s": 0.1})
    result = run("slow_calls", task)
    assert result["correct"] is True, result["error"]
    # 2 scenarios x (1 warm-up call, which spent the budget, + 3 scored windows)
    assert len(printed_calls(result["output"])) == 8
    metrics = result["metrics"]
    assert metrics["time_ms"] >= 300
    assert metrics["speed_score"] <= 0.02 / 0.3
    assert metrics["balancedness_gpu"] > 0


def test_without_a_budget_every_warm_up_call_is_made():
    task = make_task(timing={"warmup": 2, "budget_s": 10})
    result = run("slow_calls", task)
    assert result["correct"] is True, result["error"]
    # per scenario: 2 warm-up calls, then one call for each of windows 0, 1 and 2
    assert len(printed_calls(result["output"])) == 2 * (2 + 3)


def test_a_program_too_slow_for_one_call_per_window_fails_with_that_reason():
    task = make_task(limits={"timeout_s": 1, "call_timeout_s": 60},
                     timing={"warmup": 0, "repeats": 1})
    result = run("slow_calls", task)
    assert result["correct"] is False
    assert "time limit exceeded: killed after 1 s" in result["error"]
    assert re.search(r"too slow: \d of about 6 placements answered", result["error"])


# ---------------------------------------------------------------- attempts to cheat or escape

def test_candidate_cannot_forge_its_timing():
    result = run("forges_timing")
    assert result["correct"] is True, result["error"]
    assert result["metrics"]["time_ms"] >= 50
    assert result["metrics"]["speed_score"] < 0.5


# ---------------------------------------------------------------- colocated replicas


def test_colocated_replicas_are_reported_per_layer_and_in_total():
    result = run("colocates")
    assert result["correct"], result["error"]
    metrics = result["metrics"]
    # hier: 9 replicas of expert 0 on GPUs of 5 slots -> 4 + 3 colocated per layer;
    # glob: 17 replicas on GPUs of 8 slots -> 7 + 7 + 0
    for name, per_layer in (("hier", 7), ("glob", 14)):
        scenario = metrics["scenarios"][name]
        assert scenario["colocated_replicas_per_layer"] == [per_layer] * 4
        assert scenario["colocated_replicas"] == 4 * per_layer
        assert {r["colocated_replicas"] for r in scenario["per_window"]} == {4 * per_layer}
    assert metrics["colocated_replicas"] == (28 + 56) / 2
    baseline = run(INITIAL)["metrics"]
    assert baseline["colocated_replicas"] == np.mean(
        [s["colocated_replicas"] for s in baseline["scenarios"].values()])


def test_colocated_replicas_as_an_error_name_layer_device_expert():
    task = make_task(placement_rules={"colocated_replicas": "error"})
    message = failed("colocates", task)
    assert "[colocated-replicas] layer 0, device 0 holds expert 0 more than once" in message
    assert "scenario hier, window 0" in message and "28 colocated replicas in all" in message


def test_the_reference_times_kept_between_evaluations_follow_the_windows(monkeypatch):
    """The ideal and no-replication seconds are kept per process for the same windows:
    an evaluation on other windows computes its own, the same as from a cold start."""
    from eplb import evaluator

    other = make_task(synthetic={"steps": 400, "layers": 4, "experts": 32, "seed": 5})
    evaluate_program(INITIAL, make_task())
    warm = evaluate_program(INITIAL, other)["metrics"]
    monkeypatch.setattr(evaluator, "_KEPT", {})
    cold = evaluate_program(INITIAL, other)["metrics"]
    for key in ("ideal_moe_time_ms", "throughput_vs_no_replication", "throughput_vs_ideal",
                "no_replication_balancedness_gpu", "locality_nodes_per_group_weighted"):
        assert warm[key] == cold[key]
    _, windows = load_windows(other)
    assert evaluator._trace_digest(windows) == evaluator._trace_digest(windows.copy())
    changed = windows.copy()
    changed[0, 0, 0] += 1
    assert evaluator._trace_digest(changed) != evaluator._trace_digest(windows)
