"""Test candidate: returns lists of lists instead of tensors."""

import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    layers, experts = weight.shape
    phy2log = [[s % experts for s in range(num_replicas)] for _ in range(layers)]
    logcnt = [[1] * experts for _ in range(layers)]
    log2phy = [[[e] for e in range(experts)] for _ in range(layers)]
    assert isinstance(weight, torch.Tensor)
    return phy2log, log2phy, logcnt
