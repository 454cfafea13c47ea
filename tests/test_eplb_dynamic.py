"""Dynamic rebalancing: trigger policies, migration, locality, combined score, and
candidates that ask for their history and the deployed placement.

End-to-end tests run sandboxed candidates on hand-made traces of 7 windows (one step
per window) of 4 layers x 16 experts, where the right answer is known.
"""


import numpy as np
import pytest
import torch
from candidate_helpers import INITIAL, candidate_file, printed_calls

import initial
from eplb import placement
from eplb.config import Rebalance, task_config_from_dict
from eplb.dynamic import Trigger, cosine
from eplb.evaluator import evaluate_program
from eplb.synthetic import SyntheticSpec, generate
from evolve.config import ConfigError

LAYERS, EXPERTS = 4, 16
HIER = {"name": "hier", "num_replicas": 24, "num_groups": 4, "num_nodes": 2, "num_gpus": 4}
GLOB = {"name": "glob", "num_replicas": 24, "num_groups": 4, "num_nodes": 3, "num_gpus": 6}


def make_task(**changes):
    data = {"rebalance_interval": 1, "scenarios": [HIER],
            "timing": {"warmup": 0, "repeats": 1},
            "limits": {"timeout_s": 30, "memory_mb": 2048}, **changes}
    return task_config_from_dict(data)


def evaluate(tmp_path, steps, candidate="initial", **changes):
    trace = tmp_path / "trace.npy"
    np.save(trace, steps)
    with candidate_file(INITIAL if candidate == "initial" else candidate) as path:
        result = evaluate_program(path, make_task(**changes), workload=str(trace))
    assert result["correct"] is True, result["error"]
    # what a recorder candidate printed, kept beside the metrics for read_calls
    return {**result["metrics"], "printed_calls": printed_calls(result["output"])}


def base_trace(seed=0):
    rng = np.random.default_rng(seed)
    return np.repeat(rng.integers(5, 60, (1, LAYERS, EXPERTS)), 7, axis=0)


def baseline(window, spec=HIER):
    phy2log = initial.rebalance_experts(torch.from_numpy(window), spec["num_replicas"],
                                        spec["num_groups"], spec["num_nodes"],
                                        spec["num_gpus"])[0]
    return phy2log.numpy()


def scenario(spec=HIER):
    return placement.Scenario(**spec)


def gpu_balance(phy2log, load, spec=HIER):
    counts = placement.replica_counts(phy2log, EXPERTS)
    return placement.measure(load.astype(float), phy2log, counts, scenario(spec)).gpu


def read_calls(metrics):
    return metrics["printed_calls"]


# ---------------------------------------------------------------- trigger policies

def fired(spec, windows, balances=None):
    """Boundaries at which the trigger asks for layers, and which, installing each time."""
    trigger, out = Trigger(spec, windows.shape[1]), []
    for i, window in enumerate(windows):
        due = trigger.due(i, window, None if balances is None else balances[i])
        if due.any():
            out.append((i, np.flatnonzero(due).tolist()))
            trigger.installed(window, due)
    return out


def test_every_n_after_warmup():
    windows = np.ones((11, 3, 8))
    spec = Rebalance(policy="every", every_windows=3, warmup_windows=2)
    assert fired(spec, windows) == [(2, [0, 1, 2]), (5, [0, 1, 2]), (8, [0, 1, 2])]
    assert [i for i, _ in fired(Rebalance(), windows)] == list(range(11))


def test_threshold_fires_only_below():
    windows = np.ones((6, 2, 8))
    balances = [None, 0.95, 0.89, 0.91, 0.9, 0.5]
    assert [i for i, _ in fired(Rebalance(policy="threshold", threshold=0.9), windows,
                                balances)] == [0, 2, 5]


def test_similarity_replaces_only_the_changed_layer():
    windows = np.tile(np.arange(1.0, 9.0), (7, 3, 1))
    windows[3:, 1] = windows[3:, 1, ::-1]  # layer 1 flips at window 3 and stays flipped
    windows[5, 2] *= 7.0                    # same direction, more tokens: not a change
    spec = Rebalance(policy="similarity", similarity=0.95)
    assert fired(spec, windows) == [(0, [0, 1, 2]), (3, [1])]
    assert fired(Rebalance(policy="similarity", warmup_windows=4), windows) == [(4, [0, 1, 2])]


def test_cosine_of_empty_rows():
    a = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])
    assert cosine(a, b) == pytest.approx([1.0, 0.0, 0.0, 1.0])


# ---------------------------------------------------------------- locality

def test_nodes_per_group_by_hand():
    # 4 experts in 2 groups ({0, 1}, {2, 3}); 8 slots, node 0 = slots 0-3, node 1 = 4-7.
    phy2log = np.array([[0, 1, 0, 1, 2, 3, 2, 3],    # each group on its own node
                        [0, 2, 1, 3, 0, 2, 3, 1],    # both groups on both nodes
                        [0, 1, 2, 3, 0, 0, 0, 0]])   # group 0 on both, group 1 on node 0
    spec = placement.Scenario("s", num_replicas=8, num_groups=2, num_nodes=2, num_gpus=4)
    assert placement.nodes_per_group(phy2log, 4, spec).tolist() == [[1, 1], [2, 2], [2, 1]]


def test_baseline_locality_on_deepseek_shapes():
    window = generate(SyntheticSpec(steps=100)).sum(axis=0, dtype=np.int64)
    weight = torch.from_numpy(window)
    ds = placement.Scenario("ds_32gpu", 288, 8, 4, 32)
    glob = placement.Scenario("global_24gpu", 288, 8, 3, 24)
    hier = initial.rebalance_experts(weight, 288, 8, 4, 32)[0].numpy()
    flat = initial.rebalance_experts(weight, 288, 8, 3, 24)[0].numpy()
    assert (placement.nodes_per_group(hier, 256, ds) == 1).all()
    assert placement.nodes_per_group(flat, 256, glob).mean() > 1.5


# ---------------------------------------------------------------- end to end

def test_every_window_counts_migration_locality_and_weights(tmp_path):
    steps = generate(SyntheticSpec(steps=5, layers=LAYERS, experts=EXPERTS, seed=3))
    metrics = evaluate(tmp_path, steps, "history_recorder", scenarios=[HIER, GLOB],
                       rebalance={"expert_bytes": 1000},
                       score={"migration": 1.0, "locality": 2.0})
    windows = steps.astype(np.int64)
    for spec in (HIER, GLOB):
        summary = metrics["scenarios"][spec["name"]]
        records = summary["per_window"]
        placed = [baseline(w, spec) for w in windows[:-1]]
        moves = [0] + [int((a != b).sum()) for a, b in zip(placed, placed[1:], strict=False)]
        assert [r["migration"] for r in records] == moves
        assert summary["migration_slots_per_rebalance"] == moves
        assert summary["migration_slots"] == sum(moves) > 0
        assert summary["migration_bytes"] == 1000 * sum(moves)
        assert summary["migration"] == pytest.approx(np.mean(moves[1:]))
        assert summary["migration_fraction"] == pytest.approx(np.mean(moves[1:]) / (4 * 24))
        assert summary["rebalances"] == 4 and summary["layers_updated"] == 16
        assert all(r["rebalanced"] and r["time_ms"] > 0 for r in records)
        for i, record in enumerate(records):  # weighted locality, by a loop
            nodes = placement.nodes_per_group(placed[i], EXPERTS, scenario(spec))
            tokens = windows[i + 1].reshape(LAYERS, 4, 4).sum(axis=2)
            by_hand = sum(nodes[k, g] * tokens[k, g] for k in range(4) for g in range(4))
            assert record["locality_nodes_per_group_weighted"] == pytest.approx(
                by_hand / tokens.sum())
            assert record["locality_nodes_per_group"] == pytest.approx(nodes.mean())
    sums = [int(w.sum()) for w in windows]
    assert [c["history"] for c in read_calls(metrics)] == [sums[:i] for i in range(4)] * 2
    hier, glob = metrics["scenarios"]["hier"], metrics["scenarios"]["glob"]
    assert hier["locality_nodes_per_group"] == 1.0
    assert hier["locality_nodes_per_group_weighted"] == 1.0
    assert glob["locality_nodes_per_group"] > 1.0
    assert metrics["locality_nodes_per_group"] == pytest.approx(
        (1.0 + glob["locality_nodes_per_group"]) / 2)
    assert metrics["migration_score"] == pytest.approx(1 - metrics["migration_fraction"])
    assert metrics["locality_score"] == pytest.approx(1 / metrics["locality_nodes_per_group"])
    assert metrics["combined_score"] == pytest.approx(
        (metrics["balancedness_gpu"] + metrics["speed_score"] + metrics["migration_score"]
         + 2 * metrics["locality_score"]) / 5)


def test_similarity_replaces_the_flipped_layer_only(tmp_path):
    steps = base_trace()
    steps += np.random.default_rng(1).integers(0, 4, steps.shape)  # similar, not equal
    steps[3:, 2] = np.where(np.arange(EXPERTS) == 15, 400, 5)  # layer 2's hot expert moves
    steps[:3, 2] = np.where(np.arange(EXPERTS) == 0, 400, 5)
    assert (baseline(steps[3])[[0, 1, 3]] != baseline(steps[0])[[0, 1, 3]]).any()
    metrics = evaluate(tmp_path, steps, "history_recorder",
                       rebalance={"policy": "similarity", "similarity": 0.95})
    summary = metrics["scenarios"]["hier"]
    records = summary["per_window"]
    assert [r["rebalanced"] for r in records] == [True, False, False, True, False, False]
    assert [r["layers_updated"] for r in records] == [4, 0, 0, 1, 0, 0]
    assert [r["time_ms"] is None for r in records] == [False, True, True, False, True, True]
    assert summary["rebalances"] == 2 and summary["layers_updated"] == 5
    first, second = baseline(steps[0]), baseline(steps[3])
    deployed = first.copy()
    deployed[2] = second[2]
    assert records[3]["migration"] == int((first[2] != second[2]).sum()) > 0
    assert summary["migration_slots"] == records[3]["migration"]
    for record in records:  # scored with the deployed placement: only layer 2 replaced
        current = first if record["window"] < 3 else deployed
        want = gpu_balance(current, steps[record["window"] + 1])
        assert record["balancedness_gpu"] == pytest.approx(want, rel=1e-12)
    calls = read_calls(metrics)  # called twice; the observed windows are in the history
    assert [c["history_shape"] for c in calls] == [[0, 4, 16], [3, 4, 16]]
    assert calls[0]["history_dtype"] == "torch.int64"
    assert calls[1]["history"] == [int(steps[k].sum()) for k in range(3)]
    assert calls[0]["previous"] is None and calls[1]["previous"] == first.tolist()


def test_threshold_fires_when_balance_drops(tmp_path):
    steps = base_trace(seed=1)
    steps[4:] = steps[4:, :, ::-1].copy()  # the load moves to other experts at window 4
    before, after = baseline(steps[0]), baseline(steps[4])
    settled = gpu_balance(before, steps[0])
    dropped = gpu_balance(before, steps[4])
    assert dropped < settled and gpu_balance(after, steps[4]) > dropped
    threshold = (dropped + min(settled, gpu_balance(after, steps[4]))) / 2
    metrics = evaluate(tmp_path, steps, rebalance={"policy": "threshold",
                                                   "threshold": threshold})
    records = metrics["scenarios"]["hier"]["per_window"]
    assert [r["window"] for r in records if r["rebalanced"]] == [0, 4]
    assert records[3]["balancedness_gpu"] == pytest.approx(dropped, rel=1e-12)
    assert records[4]["balancedness_gpu"] == pytest.approx(gpu_balance(after, steps[5]))
    assert metrics["rebalances"] == 2


def test_every_n_with_warmup_sends_history_and_previous(tmp_path):
    steps = base_trace() * np.arange(1, 8)[:, None, None]  # every window has its own sum
    sums = [int(s.sum()) for s in steps]
    metrics = evaluate(tmp_path, steps, "history_recorder", scenarios=[HIER, GLOB],
                       history_windows=2,
                       rebalance={"policy": "every", "every_windows": 2, "warmup_windows": 1})
    assert metrics["windows_scored"] == 5
    for spec in (HIER, GLOB):
        records = metrics["scenarios"][spec["name"]]["per_window"]
        assert [r["window"] for r in records] == [1, 2, 3, 4, 5]
        assert [r["rebalanced"] for r in records] == [True, False, True, False, True]
    calls = read_calls(metrics)
    assert [c["replicas"] for c in calls] == [24] * 6
    for per_scenario, spec in ((calls[:3], HIER), (calls[3:], GLOB)):  # history restarts
        assert [c["weight"] for c in per_scenario] == [sums[1], sums[3], sums[5]]
        assert [c["history"] for c in per_scenario] == [[sums[0]], sums[1:3], sums[3:5]]
        assert [c["previous"] for c in per_scenario] == [
            None, baseline(steps[1], spec).tolist(), baseline(steps[3], spec).tolist()]


def test_keeping_the_previous_placement_moves_nothing(tmp_path):
    steps = generate(SyntheticSpec(steps=5, layers=LAYERS, experts=EXPERTS, seed=4))
    metrics = evaluate(tmp_path, steps, "keeps_previous", score={"migration": 2.0})
    summary = metrics["scenarios"]["hier"]
    assert summary["rebalances"] == 4
    assert summary["migration_slots"] == summary["migration_bytes"] == 0
    assert metrics["migration"] == 0 and metrics["migration_score"] == 1.0
    first = baseline(steps[0])
    for record in summary["per_window"]:
        assert record["balancedness_gpu"] == pytest.approx(
            gpu_balance(first, steps[record["window"] + 1]), rel=1e-12)
    assert metrics["combined_score"] == pytest.approx(
        (metrics["balancedness_gpu"] + metrics["speed_score"] + 2.0) / 4)


# ---------------------------------------------------------------- configuration

@pytest.mark.parametrize("changes,text", [
    ({"rebalance": {"policy": "sometimes"}}, "task.rebalance.policy must be one of"),
    ({"rebalance": {"every_windows": 0}}, "task.rebalance.every_windows must be >= 1"),
    ({"history_windows": -1}, "task.history_windows must be >= 0"),
    ({"score": {"locality": -1.0}}, "task.score.locality must be >= 0"),
    ({"score": {"balancedness": 0.0, "speed": 0.0}}, "must not all be 0"),
])
def test_bad_rebalance_settings(changes, text):
    with pytest.raises(ConfigError, match=text):
        make_task(**changes)


def test_warmup_must_leave_a_window_to_score(tmp_path):
    trace = tmp_path / "trace.npy"
    np.save(trace, base_trace())
    with pytest.raises(ValueError, match="warmup_windows 6 leaves no window to score"):
        evaluate_program(INITIAL, make_task(rebalance={"warmup_windows": 6}),
                         workload=str(trace))
