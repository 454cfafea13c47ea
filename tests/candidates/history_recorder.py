"""Test candidate: asks for `history` and `previous`, records what it gets to CALL_RECORD
(per-window sums of the history, the weight's sum, previous as a list or None), then
places like the baseline."""

import importlib.util
import json
from pathlib import Path

CALL_RECORD = "/tmp/eplb_test_dynamic_calls.jsonl"

_path = Path(__file__).resolve().parents[2] / "initial.py"
_spec = importlib.util.spec_from_file_location("baseline_for_history_recorder", _path)
_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_baseline)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, *, history,
                      previous=None):
    record = {"replicas": num_replicas, "weight": int(weight.sum()),
              "history": [int(h.sum()) for h in history],
              "history_shape": list(history.shape), "history_dtype": str(history.dtype),
              "previous": None if previous is None else previous.tolist()}
    with open(CALL_RECORD, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    history.zero_()  # a copy: the windows the runner keeps must not change
    return _baseline.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
