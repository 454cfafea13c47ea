"""Test candidate: the baseline's placement with one logcnt entry off by one.

Runs with initial.py's code in front of it (`baseline_rebalance_experts`): see
tests/candidate_helpers.py.
"""


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    phy2log, log2phy, logcnt = baseline_rebalance_experts(
        weight, num_replicas, num_groups, num_nodes, num_gpus)
    logcnt = logcnt.clone()
    logcnt[1, 3] += 1
    return phy2log, log2phy, logcnt
