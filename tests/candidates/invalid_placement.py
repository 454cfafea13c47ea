"""Test candidate: the baseline's placement with one logcnt entry off by one."""

import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "initial.py"
_spec = importlib.util.spec_from_file_location("baseline_for_invalid", _path)
_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_baseline)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    phy2log, log2phy, logcnt = _baseline.rebalance_experts(
        weight, num_replicas, num_groups, num_nodes, num_gpus)
    logcnt = logcnt.clone()
    logcnt[1, 3] += 1
    return phy2log, log2phy, logcnt
