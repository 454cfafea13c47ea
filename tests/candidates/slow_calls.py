"""Test candidate: every call takes 0.3 s (and prints a `CALL {}` line), then places
like the baseline.

Runs with initial.py's code in front of it (`baseline_rebalance_experts`): see
tests/candidate_helpers.py.
"""

import time


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    print("CALL {}", flush=True)
    time.sleep(0.3)
    return baseline_rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
