"""Test candidate: floods stdout and stderr, but returns the baseline's placement."""

import importlib.util
import os
import sys
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "initial.py"
_spec = importlib.util.spec_from_file_location("baseline_for_noisy", _path)
_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_baseline)

GARBAGE = bytes(range(256)) * 4096  # 1 MB of every byte value, protocol-looking or not


def _flood(megabytes):
    for _ in range(megabytes):
        os.write(1, GARBAGE)
        os.write(2, GARBAGE)
    print("{\"ready\": true}" * 1000)
    print("Traceback (most recent call last): nothing happened", file=sys.stderr)


_flood(3)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    _flood(1)
    return _baseline.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
