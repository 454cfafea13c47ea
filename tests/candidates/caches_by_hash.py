"""Test candidate (timing attack): the honest 80 ms program plus a cache keyed by a hash of
`weight`, the edit an LLM makes on its own when told to be fast. Repeated calls on one
input would cost nothing; each timed call must be on an input it has not seen."""

import hashlib

_cache = {}


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    key = (hashlib.sha256(weight.numpy().tobytes()).hexdigest(), num_replicas)
    if key not in _cache:
        _cache[key] = honest_rebalance(weight, num_replicas, num_groups, num_nodes, num_gpus)
    return tuple(t.clone() for t in _cache[key])
