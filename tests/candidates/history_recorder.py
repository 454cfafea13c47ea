"""Test candidate: asks for `history` and `previous`, prints what it gets as `CALL {json}`
lines (per-window sums of the history, the weight's sum, previous as a list or None), then
places like the baseline.

Runs with initial.py's code in front of it (`baseline_rebalance_experts`): see
tests/candidate_helpers.py.
"""

import json


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, *, history,
                      previous=None):
    record = {"replicas": num_replicas, "weight": int(weight.sum()),
              "history": [int(h.sum()) for h in history],
              "history_shape": list(history.shape), "history_dtype": str(history.dtype),
              "previous": None if previous is None else previous.tolist()}
    print("CALL", json.dumps(record), flush=True)  # the evaluator returns the output
    history.zero_()  # a copy: the windows the runner keeps must not change
    return baseline_rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
