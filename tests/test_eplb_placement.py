"""Placement checks (every rule) and the load simulation (balancedness, migration)."""

import numpy as np
import pytest
import torch

import initial
from eplb import placement
from eplb.placement import Scenario, Violation

LAYERS, EXPERTS = 3, 8
SCENARIO = Scenario("small", num_replicas=12, num_groups=4, num_nodes=2, num_gpus=4)


@pytest.fixture
def valid():
    """A valid baseline placement (numpy int64 copies) for 3 layers x 8 experts."""
    weight = torch.tensor([[5, 1, 9, 2, 7, 3, 4, 8], [1, 1, 1, 50, 1, 1, 1, 1],
                           [3, 6, 2, 8, 5, 1, 7, 4]])
    out = initial.rebalance_experts(weight, 12, 4, 2, 4)
    phy2log, log2phy, logcnt = (t.numpy().copy() for t in out)
    assert placement.validate(phy2log, log2phy, logcnt, LAYERS, EXPERTS, SCENARIO) == []
    assert log2phy.shape[2] >= 2 and (logcnt[1] > 1).any()
    return phy2log, log2phy, logcnt


def check(phy2log, log2phy, logcnt, scenario=SCENARIO) -> list[Violation]:
    return placement.validate(phy2log, log2phy, logcnt, LAYERS, EXPERTS, scenario)


def only(violations: list[Violation], rule: str) -> Violation:
    assert [v.rule for v in violations] == [rule], [str(v) for v in violations]
    return violations[0]


def replicated_expert(logcnt, layer):
    return int(np.flatnonzero(logcnt[layer] > 1)[0])


def test_valid_placement_has_no_violation(valid):
    assert check(*valid) == []
    # int32 is an integer dtype too
    assert check(*(a.astype(np.int32) for a in valid)) == []


@pytest.mark.parametrize("which,shape", [(0, (3, 11)), (1, (3, 7, 3)), (2, (3, 8, 1)),
                                         (0, (36,))])
def test_shape(valid, which, shape):
    arrays = list(valid)
    arrays[which] = np.zeros(shape, dtype=np.int64)
    violation = only(check(*arrays), "shape")
    name = ("phy2log", "log2phy", "logcnt")[which]
    assert violation.message.startswith(name) and str(shape) in violation.message
    assert violation.layer is None


def test_float_dtype(valid):
    phy2log, log2phy, logcnt = valid
    violation = only(check(phy2log.astype(np.float64), log2phy, logcnt), "dtype")
    assert "phy2log" in violation.message and "float64" in violation.message


def test_nan(valid):
    phy2log, log2phy, logcnt = valid
    broken = log2phy.astype(np.float32)
    broken[2, 5, 0] = np.nan
    violations = check(phy2log, broken, logcnt)
    assert [v.rule for v in violations] == ["dtype", "nan"]
    nan = violations[1]
    assert nan.layer == 2
    assert nan.index == 5 * log2phy.shape[2]  # position in the layer's flattened entries
    assert nan.count == 1


@pytest.mark.parametrize("value", [EXPERTS, -1, 1000])
def test_phy2log_range(valid, value):
    phy2log, log2phy, logcnt = valid
    phy2log[1, 7] = value
    violation = only(check(phy2log, log2phy, logcnt), "phy2log-range")
    assert (violation.layer, violation.index, violation.count) == (1, 7, 1)


def test_expert_without_replica(valid):
    phy2log, log2phy, logcnt = valid
    lonely = int(np.flatnonzero(logcnt[2] == 1)[-1])
    slot = int(np.flatnonzero(phy2log[2] == lonely)[0])
    phy2log[2, slot] = (lonely + 1) % EXPERTS
    violations = check(phy2log, log2phy, logcnt)
    coverage = [v for v in violations if v.rule == "coverage"]
    assert len(coverage) == 1
    assert (coverage[0].layer, coverage[0].index) == (2, lonely)
    assert violations[0].rule == "coverage"


@pytest.mark.parametrize("delta", [1, -1])
def test_logcnt_off_by_one(valid, delta):
    phy2log, log2phy, logcnt = valid
    logcnt[2, 3] += delta
    violation = only(check(phy2log, log2phy, logcnt), "logcnt")
    assert (violation.layer, violation.index) == (2, 3)


def test_log2phy_points_at_another_experts_slot(valid):
    phy2log, log2phy, logcnt = valid
    # Swap the first slots of experts 4 and 6: both now list a slot of the other.
    log2phy[1, 4, 0], log2phy[1, 6, 0] = log2phy[1, 6, 0], log2phy[1, 4, 0]
    violation = only(check(phy2log, log2phy, logcnt), "log2phy-mapping")
    assert (violation.layer, violation.index, violation.count) == (1, 4, 2)


def test_mapping_violation_is_located_at_the_listing_expert(valid):
    phy2log, log2phy, logcnt = valid
    other_slot = int(np.flatnonzero(phy2log[1] != 4)[0])
    log2phy[1, 4, 0] = other_slot
    violations = check(phy2log, log2phy, logcnt)
    assert violations[0].rule == "log2phy-mapping"
    assert (violations[0].layer, violations[0].index) == (1, 4)


def test_mapping_violation_is_not_also_reported_as_a_duplicate(valid):
    phy2log, log2phy, logcnt = valid
    other_slot = int(np.flatnonzero(phy2log[1] != 4)[0])
    log2phy[1, 4, 0] = other_slot
    only(check(phy2log, log2phy, logcnt), "log2phy-mapping")


def test_log2phy_duplicated_slot(valid):
    phy2log, log2phy, logcnt = valid
    expert = replicated_expert(logcnt, 1)
    log2phy[1, expert, 1] = log2phy[1, expert, 0]
    violation = only(check(phy2log, log2phy, logcnt), "log2phy-distinct")
    assert (violation.layer, violation.index) == (1, expert)


def test_log2phy_padding(valid):
    phy2log, log2phy, logcnt = valid
    width = log2phy.shape[2]
    expert = int(np.flatnonzero(logcnt[0] < width)[0])
    log2phy[0, expert, width - 1] = log2phy[0, expert, 0]
    violation = only(check(phy2log, log2phy, logcnt), "log2phy-padding")
    assert (violation.layer, violation.index, violation.count) == (0, expert, 1)


@pytest.mark.parametrize("slot", [12, -1, -5])
def test_log2phy_slot_out_of_range(valid, slot):
    phy2log, log2phy, logcnt = valid
    log2phy[2, 6, 0] = slot
    violation = only(check(phy2log, log2phy, logcnt), "log2phy-range")
    assert (violation.layer, violation.index, violation.count) == (2, 6, 1)


def test_log2phy_too_few_columns(valid):
    phy2log, log2phy, logcnt = valid
    violation = only(check(phy2log, log2phy[:, :, :1], logcnt), "log2phy")
    assert f"{int(logcnt.max())} replicas" in violation.message


def test_extra_padding_columns_are_fine(valid):
    phy2log, log2phy, logcnt = valid
    wider = np.concatenate([log2phy, np.full((LAYERS, EXPERTS, 3), -1)], axis=2)
    assert check(phy2log, wider, logcnt) == []


@pytest.mark.parametrize("scenario,text", [
    (Scenario("odd", 12, 4, 1, 5), "not divisible by num_gpus 5"),
    (Scenario("split", 12, 4, 3, 4), "num_gpus 4 is not divisible by num_nodes 3"),
    (Scenario("groups", 12, 3, 1, 4), "8 experts do not split into 3 groups"),
])
def test_scenario_problems(valid, scenario, text):
    violation = only(check(*valid, scenario=scenario), "scenario")
    assert text in violation.message and scenario.name in violation.message


def test_too_few_replicas_scenario():
    problems = Scenario("few", 4, 1, 1, 4).problems(8)
    assert problems == ["scenario few: num_replicas 4 < 8 experts"]


def test_violation_text_and_count(valid):
    phy2log, log2phy, logcnt = valid
    phy2log[0, 3] = phy2log[1, 5] = phy2log[1, 6] = 99
    violation = only(check(phy2log, log2phy, logcnt), "phy2log-range")
    assert (violation.layer, violation.index, violation.count) == (0, 3, 3)
    assert str(violation).startswith("[phy2log-range] ")
    assert "(layer 0, index 3)" in str(violation) and "[3 places]" in str(violation)


def test_torch_tensors_are_accepted(valid):
    assert check(*(torch.from_numpy(a) for a in valid)) == []


# ---------------------------------------------------------------- loads

# One layer, 4 experts, 8 slots on 4 GPUs (2 slots each) on 2 nodes.
# Expert 0 has 3 replicas (slots 0, 2, 6: GPUs 0, 1 and 3), experts 1 and 3 two each.
HAND_PHY2LOG = np.array([[0, 1, 0, 2, 3, 1, 0, 3]])
HAND_LOAD = np.array([[12.0, 6.0, 3.0, 9.0]])
HAND = Scenario("hand", num_replicas=8, num_groups=1, num_nodes=2, num_gpus=4)


def test_slot_and_gpu_loads_by_hand():
    counts = placement.replica_counts(HAND_PHY2LOG, 4)
    assert counts.tolist() == [[3, 2, 1, 2]]
    slots = placement.slot_loads(HAND_LOAD, HAND_PHY2LOG, counts)
    assert slots.tolist() == [[4, 3, 4, 3, 4.5, 3, 4, 4.5]]
    gpus = placement.group_sum(slots, 4)
    assert gpus.tolist() == [[7, 7, 7.5, 8.5]]
    assert placement.group_sum(gpus, 2).tolist() == [[14, 16]]


def test_balancedness_by_hand():
    counts = placement.replica_counts(HAND_PHY2LOG, 4)
    balance = placement.measure(HAND_LOAD, HAND_PHY2LOG, counts, HAND)
    assert balance.gpu == pytest.approx(7.5 / 8.5)
    assert balance.slot == pytest.approx(3.75 / 4.5)
    assert balance.node == pytest.approx(15 / 16)


def test_balancedness_is_ratio_of_sums_over_layers():
    phy2log = np.repeat(HAND_PHY2LOG, 2, axis=0)
    load = np.array([[12.0, 6.0, 3.0, 9.0], [0.0, 0.0, 0.0, 30.0]])
    counts = placement.replica_counts(phy2log, 4)
    balance = placement.measure(load, phy2log, counts, HAND)
    # layer 2: expert 3 on slots 4 and 7 (GPUs 2, 3) -> GPUs [0, 0, 15, 15]
    assert balance.gpu == pytest.approx((7.5 + 7.5) / (8.5 + 15))
    assert balance.node == pytest.approx((15 + 15) / (16 + 30))
    assert balance.gpu != pytest.approx((7.5 / 8.5 + 0.5) / 2)


def test_perfect_and_empty_balance():
    phy2log = np.array([[0, 1, 2, 3]])
    counts = placement.replica_counts(phy2log, 4)
    scenario = Scenario("flat", 4, 1, 2, 4)
    flat = placement.measure(np.full((1, 4), 5.0), phy2log, counts, scenario)
    assert (flat.gpu, flat.slot, flat.node) == (1.0, 1.0, 1.0)
    idle = placement.measure(np.zeros((1, 4)), phy2log, counts, scenario)
    assert (idle.gpu, idle.slot, idle.node) == (1.0, 1.0, 1.0)


def test_no_replication_balance_by_hand():
    # Experts in order over GPUs, no replicas: 4 experts on 2 GPUs -> [12 + 6, 3 + 9].
    balance = placement.no_replication_balance(HAND_LOAD, Scenario("n", 8, 1, 1, 2))
    assert balance.gpu == pytest.approx(15 / 18)
    assert balance.node == 1.0
    assert balance.slot == pytest.approx(7.5 / 12)
    # 4 GPUs on 2 nodes: one expert per GPU, nodes [18, 12].
    balance = placement.no_replication_balance(HAND_LOAD, HAND)
    assert balance.gpu == pytest.approx(7.5 / 12)
    assert balance.node == pytest.approx(15 / 18)


def test_no_replication_with_more_gpus_than_fit_evenly():
    # 6 experts on 4 GPUs: expert e on GPU e * 4 // 6 -> GPUs [0, 0, 1, 2, 2, 3]
    load = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    balance = placement.no_replication_balance(load, Scenario("n", 8, 1, 1, 4))
    assert balance.gpu == pytest.approx(5.25 / 9)


def test_migration_counts_changed_slots():
    before = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    after = np.array([[0, 1, 3, 3], [0, 1, 2, 3]])
    assert placement.migration(None, after) == 0
    assert placement.migration(before, before.copy()) == 0
    assert placement.migration(before, after) == 1 + 4
    assert isinstance(placement.migration(before, after), int)


def test_replica_counts_per_layer():
    phy2log = np.array([[0, 0, 0, 1], [2, 2, 1, 1]])
    assert placement.replica_counts(phy2log, 3).tolist() == [[3, 1, 0], [0, 2, 2]]


def _corruptions(valid, rng):
    """Random ways to break (or, by chance, keep) a valid log2phy."""
    phy2log, log2phy, logcnt = valid
    layers, experts, width = log2phy.shape
    for _ in range(400):
        bad = log2phy.copy()
        layer, expert, k = (int(rng.integers(n)) for n in (layers, experts, width))
        kind = rng.integers(6)
        if kind == 0:
            bad[layer, expert, k] = rng.integers(-3, phy2log.shape[1] + 3)
        elif kind == 1:  # swap two entries of one row (a valid reordering when both used)
            j = int(rng.integers(width))
            bad[layer, expert, [k, j]] = bad[layer, expert, [j, k]]
        elif kind == 2:  # swap two experts' first entries
            other = int(rng.integers(experts))
            bad[layer, [expert, other], 0] = bad[layer, [other, expert], 0]
        elif kind == 3:
            bad[layer, expert, :] = -1
        elif kind == 4:  # a slot of the same expert listed twice
            bad[layer, expert, k] = bad[layer, expert, 0]
        else:
            bad[layer] = bad[(layer + 1) % layers]
        yield phy2log, bad, logcnt


@pytest.mark.parametrize("extra_columns", [0, 2])
def test_fast_log2phy_check_agrees_with_the_locating_one(valid, extra_columns):
    """The fast path accepts exactly what the rule-by-rule check accepts."""
    rng = np.random.default_rng(3 + extra_columns)
    phy2log, log2phy, logcnt = valid
    wide = np.pad(log2phy, ((0, 0), (0, 0), (0, extra_columns)), constant_values=-1)
    counts = placement.replica_counts(phy2log, EXPERTS)
    verdicts = set()
    for _, bad, _ in _corruptions((phy2log, wide, logcnt), rng):
        fast = placement._log2phy_is_valid(phy2log, bad, counts)
        located = placement._locate_log2phy(phy2log, bad, counts)
        assert fast == (located == []), (bad, located)
        verdicts.add(fast)
    assert verdicts == {True, False}  # both outcomes were exercised
