"""Test candidate: the baseline's placement first, then the deployed one (`previous`)
unchanged, so nothing ever migrates."""

import importlib.util
from pathlib import Path

import torch

_path = Path(__file__).resolve().parents[2] / "initial.py"
_spec = importlib.util.spec_from_file_location("baseline_for_keeps_previous", _path)
_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_baseline)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, previous=None):
    if previous is None:
        return _baseline.rebalance_experts(weight, num_replicas, num_groups, num_nodes,
                                           num_gpus)
    layers, experts = weight.shape
    logcnt = torch.zeros((layers, experts), dtype=torch.int64)
    log2phy = torch.full((layers, experts, num_replicas), -1, dtype=torch.int64)
    for layer in range(layers):
        for slot, expert in enumerate(previous[layer].tolist()):
            log2phy[layer, expert, logcnt[layer, expert]] = slot
            logcnt[layer, expert] += 1
    return previous, log2phy[:, :, :int(logcnt.max())].contiguous(), logcnt
