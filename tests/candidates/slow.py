"""Test candidate: slow import (0.2 s), slow first call (warm-up, +0.3 s), 50 ms of CPU per call.

Returns a fixed round-robin placement (valid, computed in well under a millisecond).
"""

import time

import torch

time.sleep(0.2)
_calls = []



def _busy(seconds):
    """Use `seconds` of this thread's CPU (the evaluator charges CPU; a sleep's wall time
    comes out a little low on a loaded machine, where run-queue waits may overlap)."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass

def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    if not _calls:
        time.sleep(0.3)
    _calls.append(1)
    _busy(0.05)
    layers, experts = weight.shape
    slots = torch.arange(num_replicas)
    phy2log = (slots % experts).repeat(layers, 1)
    logcnt = torch.bincount(slots % experts, minlength=experts).repeat(layers, 1)
    log2phy = torch.full((layers, experts, int(logcnt.max())), -1, dtype=torch.int64)
    for slot in range(num_replicas):
        log2phy[:, slot % experts, slot // experts] = slot
    return phy2log, log2phy, logcnt
