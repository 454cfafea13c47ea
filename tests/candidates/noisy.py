"""Test candidate: floods stdout and stderr, but returns the baseline's placement.

Runs with initial.py's code in front of it (`baseline_rebalance_experts`): see
tests/candidate_helpers.py.
"""

import os
import sys

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
    return baseline_rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
