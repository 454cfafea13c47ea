"""Test candidate: records every weight it receives (hash, shape, dtype) to CALL_RECORD,
then overwrites its input in place (each call must get a fresh copy).
"""

import hashlib
import importlib.util
import json
from pathlib import Path

CALL_RECORD = "/tmp/eplb_test_protocol_calls.jsonl"

_path = Path(__file__).resolve().parents[2] / "initial.py"
_spec = importlib.util.spec_from_file_location("baseline_for_recorder", _path)
_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_baseline)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    array = weight.numpy()
    record = {"replicas": num_replicas, "sha": hashlib.sha256(array.tobytes()).hexdigest(),
              "sum": int(array.sum()), "shape": list(array.shape), "dtype": str(weight.dtype)}
    with open(CALL_RECORD, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    result = _baseline.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
    weight.zero_()
    return result
