"""Test candidate: valid on its first placement, an invalid logcnt on the second, and
raises on the third (counting the warm-up call: calls 1 and 2 are fine).

Runs with initial.py's code in front of it (`baseline_rebalance_experts`): see
tests/candidate_helpers.py.
"""

CALLS = []


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    CALLS.append(1)
    if len(CALLS) == 4:
        raise RuntimeError("the third window is never reached by a correct evaluator report")
    phy2log, log2phy, logcnt = baseline_rebalance_experts(
        weight, num_replicas, num_groups, num_nodes, num_gpus)
    if len(CALLS) == 3:
        logcnt = logcnt.clone()
        logcnt[0, 0] += 1
    return phy2log, log2phy, logcnt
