"""Reference policy: no load balancing at all (the floor any balancer should beat).

Every expert once, in order (slot e holds expert e), then the remaining R - E slots
are filled round-robin with extra replicas of experts 0, 1, 2, ... (slot s holds
expert s % E), because a valid placement may not leave a slot empty. The load is
ignored, so experts beyond the first R - E keep a single replica (when R < 2E).
Same vLLM interface as initial.py; self-contained.
"""

import torch

# EVOLVE-BLOCK-START


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int):
    """Slot s holds expert s % E in every layer. Returns (phy2log, log2phy, logcnt)."""
    layers, experts = weight.shape
    slots = torch.arange(num_replicas, dtype=torch.int64)
    phy2log = (slots % experts).expand(layers, num_replicas).contiguous()
    ids = torch.arange(experts, dtype=torch.int64)
    logcnt = num_replicas // experts + (ids < num_replicas % experts).long()
    max_count = int(logcnt.max())
    log2phy = ids[:, None] + experts * torch.arange(max_count, dtype=torch.int64)[None, :]
    log2phy = torch.where(log2phy < num_replicas, log2phy, torch.full_like(log2phy, -1))
    return (phy2log, log2phy.expand(layers, experts, max_count).contiguous(),
            logcnt.expand(layers, experts).contiguous())


# EVOLVE-BLOCK-END
