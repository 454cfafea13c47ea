"""Test candidate: refuses to work if it can see an API key; otherwise the baseline.

Runs with initial.py's code in front of it (`baseline_rebalance_experts`): see
tests/candidate_helpers.py.
"""

import os


def visible_secrets():
    return sorted(name for name, value in os.environ.items()
                  if "API_KEY" in name or "TOKEN" in name or value.startswith("sk-"))


if visible_secrets():
    raise RuntimeError(f"the candidate can see secrets: {visible_secrets()}")


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    if visible_secrets():
        raise RuntimeError("secrets appeared")
    return baseline_rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
