"""Test candidate: refuses to work if it can see an API key; otherwise the baseline."""

import importlib.util
import os
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "initial.py"
_spec = importlib.util.spec_from_file_location("baseline_for_secrets", _path)
_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_baseline)


def visible_secrets():
    return sorted(name for name, value in os.environ.items()
                  if "API_KEY" in name or "TOKEN" in name or value.startswith("sk-"))


if visible_secrets():
    raise RuntimeError(f"the candidate can see secrets: {visible_secrets()}")


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    if visible_secrets():
        raise RuntimeError("secrets appeared")
    return _baseline.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
