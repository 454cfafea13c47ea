"""Test candidate: os._exit in the middle of rebalance_experts (no reply at all)."""

import os


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    print("about to leave without a word", flush=True)
    os._exit(7)
