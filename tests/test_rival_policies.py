"""The rival reference policies: water-filling + LPT, FlashLB-style hotness, and
SwiftBalancer-style bounded migration (policies/)."""

import itertools

import numpy as np
import pytest
import torch
from test_references import SHAPES, arrays, load, weights

from eplb import placement
from eplb.placement import Scenario

HISTORY_AWARE = ("flashlb_hotness", "swift_bounded")


def peak(phy2log: np.ndarray, weight: torch.Tensor, gpus: int) -> np.ndarray:
    """Heaviest GPU load per layer."""
    load_ = weight.double().numpy()
    counts = placement.replica_counts(phy2log, load_.shape[1])
    return placement.group_sum(placement.slot_loads(load_, phy2log, counts), gpus).max(axis=1)


def call(name, weight, shape, **extra):
    _, _, replicas, groups, nodes, gpus = shape
    return arrays(load(name).rebalance_experts(weight, replicas, groups, nodes, gpus, **extra))


def valid(result, shape) -> bool:
    layers, experts, replicas, groups, nodes, gpus = shape
    return placement.validate(*result, layers, experts,
                              Scenario("s", replicas, groups, nodes, gpus)) == []


@pytest.mark.parametrize("name", HISTORY_AWARE)
@pytest.mark.parametrize("shape", SHAPES)
def test_history_aware_rivals_are_valid_with_history_and_previous(name, shape):
    layers, experts = shape[:2]
    first = call(name, weights(layers, experts, seed=3), shape)
    history = torch.stack([weights(layers, experts, seed=s) for s in (4, 5, 6)])
    extra = {"previous": torch.from_numpy(first[0])}
    if name == "flashlb_hotness":
        extra["history"] = history
    again = call(name, weights(layers, experts, seed=7), shape, **extra)
    assert valid(again, shape)


def test_water_filling_is_optimal_against_brute_force():
    fill = load("waterfill_lpt").water_fill
    rng = np.random.default_rng(0)
    for experts, slots in [(2, 5), (3, 7), (4, 8), (4, 4), (3, 9)]:
        for _ in range(30):
            loads = rng.integers(0, 40, (1, experts)).astype(float)
            loads[0, rng.integers(experts)] *= rng.integers(1, 6)
            counts = fill(loads, slots)
            assert counts.sum() == slots and counts.min() >= 1
            best = min(max(loads[0] / np.array(c))
                       for c in itertools.product(range(1, slots + 1), repeat=experts)
                       if sum(c) == slots)
            assert max(loads[0] / counts[0]) == pytest.approx(best, rel=1e-9), (loads, counts)


def test_water_filling_handles_idle_layers_and_many_spare_slots():
    counts = load("waterfill_lpt").water_fill(np.zeros((2, 4)), 11)
    assert (counts.sum(axis=1) == 11).all() and counts.min() >= 1


def test_swaps_never_raise_the_peak_and_keep_the_counts():
    module = load("waterfill_lpt")
    weight = weights(4, 64, seed=8)
    load_ = weight.double().numpy()
    counts = module.water_fill(load_, 96)
    packed = module.lpt_pack(counts, load_, 16)
    refined = module.swap_refine(packed, counts, load_, 16, 16)
    assert (peak(refined, weight, 16) <= peak(packed, weight, 16) + 1e-9).all()
    np.testing.assert_array_equal(placement.replica_counts(refined, 64), counts)


def test_waterfill_lpt_balances_at_least_as_well_as_deepseek_global():
    shape = (4, 64, 96, 8, 4, 16)
    for seed in range(3):
        weight = weights(4, 64, seed=seed)
        ours = peak(call("waterfill_lpt", weight, shape)[0], weight, 16).sum()
        theirs = peak(call("deepseek_global", weight, shape)[0], weight, 16).sum()
        assert ours <= theirs * (1 + 1e-9)


@pytest.mark.parametrize("budget", [0, 1, 3, 10, 40])
def test_bounded_migration_moves_at_most_k_slots(budget, monkeypatch):
    module = load("swift_bounded")
    monkeypatch.setattr(module, "MAX_MOVES", budget)
    shape = layers, experts, replicas, groups, nodes, gpus = (4, 64, 96, 8, 4, 16)
    before = module.rebalance_experts(weights(layers, experts, seed=1), replicas, groups,
                                      nodes, gpus)[0]
    weight = weights(layers, experts, seed=2)  # a different load: there is work to do
    after = arrays(module.rebalance_experts(weight, replicas, groups, nodes, gpus,
                                            previous=before))
    assert valid(after, shape)
    moved = int((after[0] != before.numpy()).sum())
    assert moved <= budget
    gain = peak(before.numpy(), weight, gpus) - peak(after[0], weight, gpus)
    assert (gain >= -1e-9).all()  # no layer gets worse
    if budget >= 10:
        assert moved > 0 and gain.sum() > 0


def test_bounded_migration_spends_its_moves_where_they_gain_most(monkeypatch):
    """One layer is badly balanced, the other nearly balanced: a single move goes to the first."""
    module = load("swift_bounded")
    monkeypatch.setattr(module, "MAX_MOVES", 1)
    weight = torch.tensor([[100, 10, 10, 10, 10, 10], [10] * 6], dtype=torch.int64)
    previous = torch.tensor([[0, 1, 2, 3, 4, 5, 1, 2]] * 2)  # 4 GPUs x 2 slots
    after = module.rebalance_experts(weight, 8, 1, 1, 4, previous=previous)[0].numpy()
    np.testing.assert_array_equal(after[1], previous[1].numpy())
    assert int((after[0] != previous[0].numpy()).sum()) == 1
    assert (after[0] == 0).sum() == 2  # the hot expert got a second replica


def test_flashlb_keeps_a_placement_that_costs_no_balance():
    module = load("flashlb_hotness")
    shape = layers, experts, replicas, groups, nodes, gpus = (4, 64, 96, 8, 4, 16)
    weight = weights(layers, experts, seed=5)
    first = module.rebalance_experts(weight, replicas, groups, nodes, gpus)
    # the same load again: the deployed placement is kept, nothing moves
    again = module.rebalance_experts(weight, replicas, groups, nodes, gpus,
                                     history=weight[None], previous=first[0])
    np.testing.assert_array_equal(again[0].numpy(), first[0].numpy())
    # the deployed placement with its GPUs and slots shuffled balances the same: kept too
    rng = np.random.default_rng(0)
    shuffled = first[0].numpy().reshape(layers, gpus, -1)[:, rng.permutation(gpus)]
    shuffled = np.ascontiguousarray(shuffled[:, :, ::-1]).reshape(layers, replicas)
    kept = module.rebalance_experts(weight, replicas, groups, nodes, gpus,
                                    previous=torch.from_numpy(shuffled))
    np.testing.assert_array_equal(kept[0].numpy(), shuffled)
    assert valid(arrays(kept), shape)


def test_flashlb_moves_fewer_experts_than_a_fresh_placement():
    module, fresh = load("flashlb_hotness"), load("waterfill_lpt")
    layers, experts, replicas, groups, nodes, gpus = (4, 64, 96, 8, 4, 16)
    old = module.rebalance_experts(weights(layers, experts, seed=1), replicas, groups, nodes,
                                   gpus)[0]
    weight = weights(layers, experts, seed=2)
    ours = module.rebalance_experts(weight, replicas, groups, nodes, gpus, previous=old)[0]
    theirs = fresh.rebalance_experts(weight, replicas, groups, nodes, gpus)[0]
    assert (ours != old).sum() < (theirs != old).sum()
    tolerance = 1 + module.KEEP_TOLERANCE
    assert (peak(ours.numpy(), weight, gpus) <= tolerance * peak(theirs.numpy(), weight, gpus)
            + 1e-9).all()


def test_flashlb_hotness_is_a_decayed_mean():
    module = load("flashlb_hotness")
    weight = torch.tensor([[8.0, 0.0]])
    history = torch.tensor([[[0.0, 8.0]]])
    np.testing.assert_allclose(module.hotness(weight.numpy(), history),
                               [[8 * 2 / 3, 8 / 3]])
    same = module.hotness(weight.numpy(), weight.repeat(5, 1, 1))
    np.testing.assert_allclose(same, weight.numpy())
