"""Test candidate: imports the evaluator's own package (forbidden)."""

import eplb.placement


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return eplb.placement.validate
