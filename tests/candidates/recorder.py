"""Test candidate: prints every weight it receives (hash, shape, dtype) as `CALL {json}`
lines, then overwrites its input in place (each call must get a fresh copy).

Runs with initial.py's code in front of it (`baseline_rebalance_experts`): see
tests/candidate_helpers.py.
"""

import hashlib
import json


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    array = weight.numpy()
    record = {"replicas": num_replicas, "sha": hashlib.sha256(array.tobytes()).hexdigest(),
              "sum": int(array.sum()), "shape": list(array.shape), "dtype": str(weight.dtype)}
    print("CALL", json.dumps(record), flush=True)  # the evaluator returns the output
    result = baseline_rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
    weight.zero_()
    return result
