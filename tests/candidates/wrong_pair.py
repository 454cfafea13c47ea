"""Test candidate: returns only (phy2log, log2phy)."""

import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "initial.py"
_spec = importlib.util.spec_from_file_location("baseline_for_pair", _path)
_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_baseline)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    result = _baseline.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
    return result[0], result[1]
