"""Test candidate: the baseline's placement first, then the deployed one (`previous`)
unchanged, so nothing ever migrates.

Runs with initial.py's code in front of it (`baseline_rebalance_experts`): see
tests/candidate_helpers.py.
"""


import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, previous=None):
    if previous is None:
        return baseline_rebalance_experts(weight, num_replicas, num_groups, num_nodes,
                                           num_gpus)
    layers, experts = weight.shape
    logcnt = torch.zeros((layers, experts), dtype=torch.int64)
    log2phy = torch.full((layers, experts, num_replicas), -1, dtype=torch.int64)
    for layer in range(layers):
        for slot, expert in enumerate(previous[layer].tolist()):
            log2phy[layer, expert, logcnt[layer, expert]] = slot
            logcnt[layer, expert] += 1
    return previous, log2phy[:, :, :int(logcnt.max())].contiguous(), logcnt
