"""Test candidate: the baseline's placement plus about 80 ms of CPU work per call (SHA-256
of a fixed block, a cost the tests measure in their own process). Honest: the reference
the timing attacks (tests/test_timing_attacks.py) are measured against.

Runs with initial.py's code in front of it (`baseline_rebalance_experts`), and is itself
put in front of a candidate that calls `honest_rebalance`: see tests/candidate_helpers.py.
"""

import hashlib

BURN_BLOCK = b"\x5a" * 65536
BURN_ROUNDS = 2200  # about 80 ms of one CPU on the development machine


def burn(rounds=BURN_ROUNDS):
    """CPU work of a known cost (hashlib releases the GIL, so threads run it in parallel)."""
    for _ in range(rounds):
        hashlib.sha256(BURN_BLOCK).digest()


def honest_rebalance(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """What one honest call costs: the baseline's placement and the burn."""
    burn()
    return baseline_rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return honest_rebalance(weight, num_replicas, num_groups, num_nodes, num_gpus)
