"""Test candidate: takes 50 ms per call, then swaps the runner's timed-call helper for one
that reports every call as instantaneous. The evaluator's round-trip check must catch it.

The runner is not in sys.modules; the candidate finds its globals on the call stack
(it is imported from the runner's `serve`), as a determined attacker would."""

import sys
import time

import torch


def _honest_placement(weight, num_replicas):
    layers, experts = weight.shape
    slots = torch.arange(num_replicas)
    phy2log = (slots % experts).repeat(layers, 1)
    logcnt = torch.bincount(slots % experts, minlength=experts).repeat(layers, 1)
    log2phy = torch.full((layers, experts, int(logcnt.max())), -1, dtype=torch.int64)
    for slot in range(num_replicas):
        log2phy[:, slot % experts, slot // experts] = slot
    return phy2log, log2phy, logcnt


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    time.sleep(0.05)
    return _honest_placement(weight, num_replicas)


def _runner_globals():
    frame = sys._getframe()
    while frame is not None:
        if "_place" in frame.f_globals and "serve" in frame.f_globals:
            return frame.f_globals
        frame = frame.f_back
    raise RuntimeError("the runner was not found on the stack")


_runner = _runner_globals()
_real_place = _runner["_place"]


def _forged_place(request, weight, rebalance, torch_module, clock, **extras):
    arrays, times, _ = _real_place(request, weight, rebalance, torch_module, clock, **extras)
    return arrays, [0.0 for _ in times], 0.0


_runner["_place"] = _forged_place
