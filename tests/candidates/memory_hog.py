"""Test candidate: tries to allocate 8 GB in rebalance_experts."""

import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    hog = torch.ones(2 * 1024**3, dtype=torch.float32)  # 8 GB
    return hog, hog, hog
