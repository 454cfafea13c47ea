"""Test candidate: takes 50 ms per call and tries to replace a module-level clock in the
runner to report 0 ms (the runner keeps its clock local, so this must have no effect)."""

import sys
import time

import torch

_runner = sys.modules.get("__main__")
if _runner is not None and hasattr(_runner, "perf_counter"):
    _runner.perf_counter = lambda: 0.0


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    time.sleep(0.05)
    layers, experts = weight.shape
    slots = torch.arange(num_replicas)
    phy2log = (slots % experts).repeat(layers, 1)
    logcnt = torch.bincount(slots % experts, minlength=experts).repeat(layers, 1)
    log2phy = torch.full((layers, experts, int(logcnt.max())), -1, dtype=torch.int64)
    for slot in range(num_replicas):
        log2phy[:, slot % experts, slot // experts] = slot
    return phy2log, log2phy, logcnt
