"""Test candidate: every spare slot goes to expert 0, next to its first replica on GPU 0."""

import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    layers, experts = weight.shape
    spare = num_replicas - experts
    row = torch.cat([torch.zeros(spare + 1, dtype=torch.int64), torch.arange(1, experts)])
    phy2log = row.repeat(layers, 1)
    logcnt = torch.ones(layers, experts, dtype=torch.int64)
    logcnt[:, 0] = spare + 1
    log2phy = torch.full((layers, experts, spare + 1), -1, dtype=torch.int64)
    log2phy[:, 0, :] = torch.arange(spare + 1)
    log2phy[:, 1:, 0] = torch.arange(spare + 1, num_replicas)
    return phy2log, log2phy, logcnt
