"""Test candidate: rebalance_experts raises."""


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise ValueError("candidate gave up on purpose")
