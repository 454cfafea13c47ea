"""Test candidate: calls sys.exit while being imported."""

import sys

sys.exit(3)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never reached")
