"""The step-time model (eplb/serving.py): sanity properties, migration, config, and the
serving metrics the evaluator reports."""

import itertools

import numpy as np
import pytest
import torch

import initial
from eplb import placement, serving
from eplb.config import task_config_from_dict
from eplb.evaluator import evaluate_program, feedback_text, load_windows
from evolve.config import ConfigError

H800 = serving.PRESETS["h800_ib400"]
# 2 nodes x 2 GPUs x 2 slots; 4 groups of 2 experts
TOPO = serving.Topology(num_replicas=8, num_gpus=4, num_nodes=2, num_groups=4, experts=8)


# a token picks 2 of the 4 groups (4 copies in each), so where groups live matters
PICK2 = serving.hardware("h800_ib400", groups_per_token=2)
PICK2_LL = serving.hardware("h800_ib400", groups_per_token=2, dispatch="low_latency")


def cost(load, phy2log, topo=TOPO, hw=H800):
    return serving.placement_cost(np.asarray(load, dtype=float), np.asarray(phy2log), topo, hw)


def seconds(load, phy2log, topo=TOPO, hw=H800):
    return cost(load, phy2log, topo, hw).seconds


def test_a_balanced_placement_of_packed_groups_is_ideal():
    load = np.array([[5.0, 5, 3, 7, 5, 5, 1, 9]])  # every GPU (expert pair) carries 10
    packed = np.array([[0, 1, 2, 3, 4, 5, 6, 7]])  # group g on GPU g: one node per group
    # experts 1 and 5 swap nodes: the same GPU loads, groups 0 and 2 on two nodes each
    split = np.array([[0, 5, 2, 3, 4, 1, 6, 7]])
    assert placement.slot_loads(load, split, np.ones((1, 8))).reshape(4, 2).sum(1).tolist() \
        == [10] * 4
    for hw in (H800, PICK2, PICK2_LL):
        assert seconds(load, packed, hw=hw) == pytest.approx(
            serving.ideal_layer_seconds(load, TOPO, hw))
    # normal kernels: split groups reach the other node more often, so more transfers
    assert cost(load, split, hw=PICK2).transfers_per_token[0] > \
        cost(load, packed, hw=PICK2).transfers_per_token[0]
    assert seconds(load, split, hw=PICK2)[0] > seconds(load, packed, hw=PICK2)[0]
    # ... unless every token needs every group (4 of 4) anyway, and low-latency kernels
    # send one message per remote copy wherever the groups are
    for hw in (H800, PICK2_LL):
        assert seconds(load, split, hw=hw) == pytest.approx(seconds(load, packed, hw=hw))


def test_the_ideal_is_not_beaten_by_random_placements():
    rng = np.random.default_rng(0)
    for hw in (H800, PICK2, PICK2_LL):
        for _ in range(30):
            load = rng.integers(0, 100, (3, 8)).astype(float)
            phy2log = np.stack([rng.permutation(8) for _ in range(3)])
            ideal = serving.ideal_layer_seconds(load, TOPO, hw)
            assert (seconds(load, phy2log, hw=hw) >= ideal * (1 - 1e-12)).all()


def test_more_network_traffic_is_never_faster():
    rng = np.random.default_rng(1)
    gpus = rng.uniform(0, 100, (5, 4))
    transfers = rng.uniform(0, 100, (5, 4))
    base = serving.layer_seconds(gpus, transfers, TOPO, H800)
    for _ in range(20):
        more = transfers + rng.uniform(0, 50, transfers.shape) * (rng.random((5, 4)) < 0.5)
        assert (serving.layer_seconds(gpus, more, TOPO, H800) >= base).all()
    # and a slower network is never faster
    slow = serving.hardware("h800_ib400", inter_node_gbps=10.0)
    assert (serving.layer_seconds(gpus, transfers, TOPO, slow) > base).all()


def test_transfers_per_token_by_kernel():
    rng = np.random.default_rng(2)
    load = rng.integers(1, 100, (4, 8)).astype(float)
    phy2log = np.stack([rng.permutation(8) for _ in range(4)])
    # low latency: every copy whose token sits on the other node (half of them) is a message
    assert cost(load, phy2log, hw=PICK2_LL).transfers_per_token == pytest.approx(8 / 2)
    # normal, 4 of 4 groups packed two per node: every token reaches both nodes, so one
    # transfer, to the other
    packed = np.arange(8)[None]
    assert cost(load, packed.repeat(4, 0)).transfers_per_token == pytest.approx(1)
    # normal, 2 of 4 groups: the other node is reached unless both groups are on the
    # token's node; uniform loads: each pair of groups has chance 1/6
    uniform = np.ones((1, 8))
    assert cost(uniform, packed, hw=PICK2).transfers_per_token[0] == pytest.approx(5 / 6)


def test_group_choice_is_conditional_poisson_sampling():
    rng = np.random.default_rng(3)
    chance = np.array([0.95, 0.7, 0.5, 0.4, 0.3, 0.15])  # 6 groups, 3 picked
    x = serving.subset_weights(chance, 3, iterations=30)
    subsets = list(itertools.combinations(range(6), 3))
    weights = np.array([np.prod(x[list(s)]) for s in subsets])
    weights /= weights.sum()
    inclusion = [sum(w for w, s in zip(weights, subsets, strict=True) if j in s) for j in range(6)]
    assert inclusion == pytest.approx(chance, rel=1e-6)
    # P(no copy on a node) = E_S prod a_j, against the enumeration
    missed = rng.uniform(0, 1, 6)
    exact = sum(w * np.prod(missed[list(s)]) for w, s in zip(weights, subsets, strict=True))
    e = serving.elementary_symmetric
    assert e(x * missed, 3)[3] / e(x, 3)[3] == pytest.approx(exact)


def test_one_node_has_no_network_traffic():
    topo = serving.Topology(8, 4, 1, 4, 8)
    load = np.array([[5.0, 5, 3, 7, 6, 4, 1, 9]])
    for hw in (H800, PICK2_LL):
        assert cost(load, [[0, 1, 2, 3, 4, 5, 6, 7]], topo, hw).transfers_per_token[0] == 0
    expected = 10 * (H800.seconds_per_copy + 0.75 * H800.bytes_per_copy / 155e9)
    assert seconds(load, [[0, 1, 2, 3, 4, 5, 6, 7]], topo)[0] == pytest.approx(expected)


def test_no_replication_is_slower_than_the_baseline():
    windows = load_windows(small_task())[1].astype(float)
    for spec in SCENARIOS:
        scenario = placement.Scenario(**spec)
        topo = serving.Topology(scenario.num_replicas, scenario.num_gpus, scenario.num_nodes,
                                scenario.num_groups, windows.shape[2])
        phy2log = initial.rebalance_experts(
            torch.from_numpy(windows[0].astype(np.int64)), scenario.num_replicas,
            scenario.num_groups, scenario.num_nodes, scenario.num_gpus)[0].numpy()
        ours = serving.placement_seconds(windows[1], phy2log, topo, H800).sum()
        plain = serving.no_replication_seconds(windows[1], topo, H800).sum()
        ideal = serving.ideal_layer_seconds(windows[1], topo, H800).sum()
        assert ideal < ours < plain


def test_migration_seconds():
    before = np.array([[0, 1, 2, 3, 4, 5, 6, 7]])
    assert serving.migration_seconds(None, before, TOPO, H800, 1e9) == 0
    assert serving.migration_seconds(before, before.copy(), TOPO, H800, 1e9) == 0
    # slot 1 (GPU 0, node 0) loads expert 2, which node 0 had (slot 2): NVLink
    local = np.array([[0, 2, 2, 3, 4, 5, 6, 7]])
    assert serving.migration_seconds(before, local, TOPO, H800, 1e9) == pytest.approx(1 / 155)
    # expert 5 lived on node 1 only: over the network, slower
    remote = np.array([[0, 5, 2, 3, 4, 5, 6, 7]])
    assert serving.migration_seconds(before, remote, TOPO, H800, 1e9) == pytest.approx(1 / 45)
    # the busiest GPU counts: two remote loads on GPU 0, one on GPU 3
    both = np.array([[5, 6, 2, 3, 4, 5, 6, 0]])
    assert serving.migration_seconds(before, both, TOPO, H800, 1e9) == pytest.approx(2 / 45)


def _placements(rng, windows, layers, topo):
    """Random placements [windows, layers, R] that differ per window: every expert once,
    the spare slots replicas of random experts (some twice or more), shuffled."""
    spare = topo.num_replicas - topo.experts
    return np.stack([[rng.permutation(np.concatenate([np.arange(topo.experts), rng.integers(
        0, topo.experts, spare)])) for _ in range(layers)] for _ in range(windows)])


def test_window_seconds_by_migration_mode():
    assert serving.window_seconds(2.0, 3.0, 0.0, "async") == 2.0
    assert serving.window_seconds(2.0, 3.0, 0.5, "stop_the_world") == 2.5
    # async: the old placement serves the first 0.6 s of a 3 s window (a fifth of it)
    assert serving.window_seconds(2.0, 3.0, 0.6, "async") == pytest.approx(0.2 * 3 + 0.8 * 2)
    assert serving.window_seconds(2.0, 3.0, 9.0, "async") == 3.0


def test_hardware_presets_and_overrides():
    assert serving.hardware("h800_ib400") == H800
    assert serving.hardware("h20_ib400").seconds_per_copy > H800.seconds_per_copy
    assert H800.seconds_per_copy == pytest.approx(6 * 7168 * 2048 / 1e15)
    assert serving.hardware("h800_ib400", inter_node_gbps=25).inter_node_gbps == 25
    with pytest.raises(ValueError, match="h20_ib400, h800_ib400"):
        serving.hardware("tpu")
    with pytest.raises(ValueError, match="inter_node_gbps"):
        serving.hardware("h800_ib400", inter_node_gbps=0)


# ---------------------------------------------------------------- config and evaluator

SCENARIOS = [
    {"name": "hier", "num_replicas": 40, "num_groups": 4, "num_nodes": 2, "num_gpus": 8},
    {"name": "glob", "num_replicas": 48, "num_groups": 4, "num_nodes": 3, "num_gpus": 6},
]


def small_task(**changes):
    data = {"synthetic": {"steps": 400, "layers": 4, "experts": 32, "seed": 0},
            "rebalance_interval": 100, "scenarios": SCENARIOS,
            "rebalance": {"expert_bytes": 44040192},
            "timing": {"warmup": 0, "repeats": 1},
            "limits": {"timeout_s": 30, "memory_mb": 2048}}
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value}
    return task_config_from_dict(data)


def test_config_names_the_presets():
    with pytest.raises(ConfigError, match="unknown hardware preset 'a100'.*h800_ib400"):
        small_task(hardware={"preset": "a100"})
    with pytest.raises(ConfigError, match="migration_mode"):
        small_task(rebalance={"migration_mode": "later"})
    with pytest.raises(ConfigError, match="score.target"):
        small_task(score={"target": "speed"})
    with pytest.raises(ConfigError, match="task.hardware.dispatch must be one of 'normal', "
                       "'low_latency'; got 'fast'"):
        small_task(hardware={"dispatch": "fast"})
    with pytest.raises(ValueError, match="dispatch must be one of normal, low_latency"):
        serving.hardware("h800_ib400", dispatch="fast")
    assert small_task().hardware.resolve().dispatch == "normal"
    task = small_task(hardware={"preset": "h20_ib400", "achievable_tflops": 100})
    assert task.hardware.resolve().achievable_tflops == 100
    assert small_task().score.target == "balancedness"  # the published score by default


@pytest.fixture(scope="module")
def modes():
    return {mode: evaluate_program(initial.__file__, small_task(
        rebalance={"migration_mode": mode}))["metrics"] for mode in ("stop_the_world", "async")}


def test_evaluator_reports_the_model(modes):
    metrics = modes["stop_the_world"]
    task = small_task()
    windows = load_windows(task)[1].astype(float)
    hw = task.hardware.resolve()
    for spec in SCENARIOS:
        scenario = placement.Scenario(**spec)
        topo = serving.Topology(scenario.num_replicas, scenario.num_gpus, scenario.num_nodes,
                                scenario.num_groups, 32)
        summary = metrics["scenarios"][scenario.name]
        previous = None
        for i, record in enumerate(summary["per_window"]):
            phy2log = initial.rebalance_experts(
                torch.from_numpy(windows[i].astype(np.int64)), scenario.num_replicas,
                scenario.num_groups, scenario.num_nodes, scenario.num_gpus)[0].numpy()
            new = serving.placement_cost(windows[i + 1], phy2log, topo, hw)
            new_s = new.seconds.sum()
            ideal_s = serving.ideal_layer_seconds(windows[i + 1], topo, hw).sum()
            move_s = serving.migration_seconds(previous, phy2log, topo, hw, 44040192)
            assert record["moe_time_ms"] == pytest.approx(1000 * new_s / 100)
            assert record["throughput_vs_ideal"] == pytest.approx(ideal_s / new_s)
            assert record["internode_transfers_per_token"] == pytest.approx(
                new.transfers_per_token.mean())
            assert record["migration_seconds"] == pytest.approx(move_s)
            assert record["serving_throughput_vs_ideal"] == pytest.approx(
                ideal_s / (new_s + move_s))
            assert (move_s == 0) == (i == 0)
            previous = phy2log
        moves = [r["migration_seconds"] for r in summary["per_window"][1:]]
        assert summary["migration_seconds"] == pytest.approx(np.mean(moves))
    assert 0 < metrics["serving_throughput_vs_ideal"] < metrics["throughput_vs_ideal"] < 1
    assert metrics["throughput_vs_no_replication"] > 1
    assert 0 < metrics["migration_time_share"] < 1
    hier = metrics["scenarios"]["hier"]
    assert (f"modelled MoE step {hier['moe_time_ms']:.1f} ms = "
            f"{hier['throughput_vs_ideal']:.3f} of ideal") in feedback_text(metrics)


def test_async_migration_costs_less_than_stopping(modes):
    stop, lag = modes["stop_the_world"], modes["async"]
    assert lag["throughput_vs_ideal"] == stop["throughput_vs_ideal"]
    assert lag["migration_seconds"] == stop["migration_seconds"]
    assert lag["serving_throughput_vs_ideal"] > stop["serving_throughput_vs_ideal"]
    assert 0 < lag["migration_time_share"] < stop["migration_time_share"]


def test_score_target_throughput(modes):
    task = small_task(score={"target": "throughput"})
    metrics = evaluate_program(initial.__file__, task)["metrics"]
    assert metrics["combined_score"] == pytest.approx(
        (metrics["serving_throughput_vs_ideal"] + metrics["speed_score"]) / 2)
    stop = modes["stop_the_world"]
    assert stop["combined_score"] == pytest.approx(
        (stop["balancedness_gpu"] + stop["speed_score"]) / 2)


def test_low_latency_kernels_make_throughput_the_balancedness(modes):
    metrics = evaluate_program(initial.__file__, small_task(
        hardware={"dispatch": "low_latency"}))["metrics"]
    for spec in SCENARIOS:
        summary = metrics["scenarios"][spec["name"]]
        remote = (spec["num_nodes"] - 1) / spec["num_nodes"]
        # one message per copy whose token is on another node, wherever the groups are
        assert summary["internode_transfers_per_token"] == pytest.approx(8 * remote)
        for record in summary["per_window"]:
            assert record["throughput_vs_ideal"] == pytest.approx(record["balancedness_gpu"])
    normal = modes["stop_the_world"]
    assert normal["internode_transfers_per_token"] == pytest.approx(np.mean(
        [s["internode_transfers_per_token"] for s in normal["scenarios"].values()]))
    assert normal["internode_transfers_per_token"] < metrics["internode_transfers_per_token"]
    # balancedness is untouched by the kernel
    assert metrics["balancedness_gpu"] == normal["balancedness_gpu"]
