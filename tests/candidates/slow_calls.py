"""Test candidate: every call takes 0.3 s (and prints a `CALL {}` line); the placement
is a fixed round-robin one, valid in every scenario."""

import time

import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    print("CALL {}", flush=True)
    time.sleep(0.3)
    layers, experts = weight.shape
    slots = torch.arange(num_replicas)
    phy2log = (slots % experts).repeat(layers, 1)
    logcnt = torch.bincount(slots % experts, minlength=experts).repeat(layers, 1)
    log2phy = torch.full((layers, experts, int(logcnt.max())), -1, dtype=torch.int64)
    for slot in range(num_replicas):
        log2phy[:, slot % experts, slot // experts] = slot
    return phy2log, log2phy, logcnt
