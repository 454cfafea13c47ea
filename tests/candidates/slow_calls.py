"""Test candidate: every call uses 0.3 s of CPU (and prints a `CALL {}` line), then places
like the baseline.

Runs with initial.py's code in front of it (`baseline_rebalance_experts`): see
tests/candidate_helpers.py.
"""

import time


def _busy(seconds):
    """Use `seconds` of this thread's CPU (the evaluator charges CPU; a sleep's wall time
    comes out a little low on a loaded machine, where run-queue waits may overlap)."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass

def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    print("CALL {}", flush=True)
    _busy(0.3)
    return baseline_rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
