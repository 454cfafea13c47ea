"""Test candidate: defines everything but rebalance_experts."""

rebalance_experts_v2 = None


def rebalance(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never called")
