"""Colocated replicas (an expert twice on one GPU): counting, locating, repairing by swaps."""

import numpy as np
import pytest
import torch

import initial
from eplb import colocation, placement, synthetic
from eplb.colocation import RepairError, colocated_replicas, first_colocated, repair
from eplb.placement import Scenario
from eplb.workload import make_windows


def gpu_loads(phy2log, load, gpus):
    counts = placement.replica_counts(phy2log, load.shape[1])
    return placement.group_sum(placement.slot_loads(load, phy2log, counts), gpus)


def test_counts_and_first_location_by_hand():
    # 2 layers, 3 GPUs x 3 slots
    phy2log = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8],
                        [0, 0, 1, 2, 2, 2, 3, 4, 5]])
    np.testing.assert_array_equal(colocated_replicas(phy2log, 3), [0, 3])
    assert first_colocated(phy2log, 3) == (1, 0, 0)
    assert first_colocated(phy2log[:1], 3) is None
    # on 9 GPUs of one slot nothing can be colocated
    np.testing.assert_array_equal(colocated_replicas(phy2log, 9), [0, 0])


def test_repair_keeps_counts_and_removes_every_colocated_replica():
    rng = np.random.default_rng(5)
    layers, experts, gpus = 6, 16, 4  # 24 slots: 6 per GPU
    phy2log = np.concatenate([np.tile(np.arange(experts), (layers, 1)),
                              np.tile(np.repeat(np.arange(4), 2), (layers, 1))], axis=1)
    load = rng.integers(1, 1000, (layers, experts)).astype(np.float64)
    assert colocated_replicas(phy2log, gpus).sum() > 0
    fixed = repair(phy2log, load, gpus)
    assert colocated_replicas(fixed.phy2log, gpus).sum() == 0
    np.testing.assert_array_equal(placement.replica_counts(fixed.phy2log, experts),
                                  placement.replica_counts(phy2log, experts))
    assert fixed.swaps == sum(fixed.swaps_per_layer) > 0
    # a swap fixes at least one colocated replica
    assert fixed.swaps <= colocated_replicas(phy2log, gpus).sum()
    untouched = colocated_replicas(phy2log, gpus) == 0
    np.testing.assert_array_equal(fixed.phy2log[untouched], phy2log[untouched])


def test_repair_prefers_the_swap_that_moves_no_load():
    # GPU 0 holds expert 0 twice; experts 1 and 2 each carry as much as one replica of 0,
    # expert 3 is far lighter: swapping with a slot of expert 1 or 2 leaves loads equal.
    phy2log = np.array([[0, 0, 3, 1, 2, 3]])
    load = np.array([[200.0, 100.0, 100.0, 2.0]])
    fixed = repair(phy2log, load, 2)
    assert fixed.swaps == 1
    assert colocated_replicas(fixed.phy2log, 2).sum() == 0
    np.testing.assert_allclose(gpu_loads(fixed.phy2log, load, 2),
                               gpu_loads(phy2log, load, 2))


def test_no_repair_exists_names_layer_device_expert():
    phy2log = np.array([[0, 1, 2, 3], [0, 0, 0, 1]])  # layer 1: expert 0 thrice on 2 GPUs
    with pytest.raises(RepairError, match=r"layer 1, device 0: expert 0 has 3 replicas but "
                                          r"there are only 2 devices"):
        repair(phy2log, np.ones((2, 4)), 2)


@pytest.mark.parametrize("seed", range(20))
def test_random_feasible_placements_are_always_repaired(seed):
    rng = np.random.default_rng(seed)
    gpus, slots = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    experts = int(rng.integers(2, gpus * slots + 1))
    extra = rng.integers(0, experts, gpus * slots - experts)
    row = rng.permutation(np.concatenate([np.arange(experts), extra]))
    load = rng.integers(0, 50, (1, experts)).astype(np.float64)
    if np.bincount(row).max() > gpus:
        with pytest.raises(RepairError, match="replicas but there are only"):
            repair(row[None], load, gpus)
        return
    fixed = repair(row[None], load, gpus)
    assert colocated_replicas(fixed.phy2log, gpus).sum() == 0
    assert sorted(fixed.phy2log[0]) == sorted(row)


def test_the_baseline_on_the_default_trace():
    """The issue's numbers: 99 colocated replicas in 49 of 58 layers (32 GPUs), repaired
    with one swap each and no loss of balancedness on the window placed for."""
    spec = synthetic.SyntheticSpec()
    window = make_windows(synthetic.generate(spec), 100)[-1]
    scenario = Scenario("ds_32gpu", 288, 8, 4, 32)
    phy2log = initial.rebalance_experts(torch.from_numpy(window), 288, 8, 4, 32)[0].numpy()
    found = colocated_replicas(phy2log, 32)
    assert (found.sum(), np.count_nonzero(found)) == (99, 49)
    fixed = repair(phy2log, window, 32)
    assert fixed.swaps == 99 and colocated_replicas(fixed.phy2log, 32).sum() == 0
    counts = placement.replica_counts(phy2log, 256)
    load = window.astype(np.float64)
    before = placement.measure(load, phy2log, counts, scenario).gpu
    after = placement.measure(load, fixed.phy2log, counts, scenario).gpu
    assert after >= before - 1e-4
    assert colocation.first_colocated(fixed.phy2log, 32) is None
