"""Test candidate: uses 50 ms of CPU per call and tries to replace a module-level clock in the
runner, found on the call stack, to report 0 ms (the runner keeps its clock local, so
this must have no effect)."""

import sys
import time

import torch

_frame = sys._getframe()
while _frame is not None:
    if "serve" in _frame.f_globals:  # the runner's module
        _frame.f_globals["perf_counter"] = lambda: 0.0
        _frame.f_globals["time"] = None
    _frame = _frame.f_back



def _busy(seconds):
    """Use `seconds` of this thread's CPU (the evaluator charges CPU; a sleep's wall time
    comes out a little low on a loaded machine, where run-queue waits may overlap)."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass

def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    _busy(0.05)
    layers, experts = weight.shape
    slots = torch.arange(num_replicas)
    phy2log = (slots % experts).repeat(layers, 1)
    logcnt = torch.bincount(slots % experts, minlength=experts).repeat(layers, 1)
    log2phy = torch.full((layers, experts, int(logcnt.max())), -1, dtype=torch.int64)
    for slot in range(num_replicas):
        log2phy[:, slot % experts, slot // experts] = slot
    return phy2log, log2phy, logcnt
