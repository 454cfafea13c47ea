"""A token-level simulation of DeepSeek-V3 routing and DeepEP dispatch, to check the
analytic step-time model of eplb/serving.py (tests and benchmarks only, never the
evaluator's hot path).

Routing (DeepSeek-V3): each token has a sigmoid affinity per expert plus a per-expert
bias; a group scores the sum of its two best biased affinities, the token keeps the
best `groups_per_token` groups and then its `experts_per_token` best experts among
them. The bias is iterated until the simulated loads match the window's (the same role
DeepSeek-V3's auxiliary-loss-free bias plays). Each token starts on a uniformly random
GPU (data-parallel attention); each copy goes to one replica of its expert: uniformly
(`even`), or, as SGLang's static dispatch does, to the replica on the token's own GPU
when there is one and else to a uniform one (`own_gpu_first`).

Counting, per token (DeepEP):
  per_group_node  remote (group, node) pairs it needs (the project's old rule)
  normal          remote nodes holding any of its copies: one RDMA transfer each, to
                  the GPU of the token's local rank there; then one NVLink message per
                  (token, GPU) not that GPU (and, on the token's own node, not its GPU)
  low_latency     copies on a remote node, each straight to its GPU; copies from the
                  token's node but another GPU go over NVLink
MoE seconds per layer = max over GPUs of copies * t_copy + NVLink messages * b / NVLink
+ RDMA messages landing on its card * b / network, scaled to the window's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from eplb import serving


@dataclass
class Routing:
    """The experts [L, T, k] chosen by T simulated tokens per layer."""

    experts: torch.Tensor
    window_tokens: np.ndarray  # [L]: tokens the window routed (copies / k)


def route(expert_loads: np.ndarray, groups: int, hw: serving.Hardware, tokens: int = 8192,
          iterations: int = 100, seed: int = 0) -> Routing:
    """Group-limited top-k routing of `tokens` tokens per layer, on affinities biased so
    that the simulated loads match expert_loads [L, E]."""
    gen = torch.Generator().manual_seed(seed)
    layers, experts = expert_loads.shape
    k, size = hw.experts_per_token, min(hw.groups_per_token, groups)
    affinity = torch.sigmoid(torch.randn(layers, tokens, experts, generator=gen))
    loads = torch.as_tensor(expert_loads, dtype=torch.float64)
    target = loads / loads.sum(dim=1, keepdim=True) * tokens * k
    bias = torch.zeros(layers, 1, experts)
    for step in range(iterations + 1):
        chosen = _top_experts(affinity + bias, groups, size, k)
        if step == iterations:
            break
        counts = torch.zeros(layers, experts, dtype=torch.float64).scatter_add_(
            1, chosen.reshape(layers, -1), torch.ones(layers, tokens * k, dtype=torch.float64))
        rate = 0.15 if step < iterations // 2 else 0.04
        bias += rate * torch.log((target + 0.5) / (counts + 0.5)).float()[:, None, :]
    window = expert_loads.sum(axis=1) / k
    return Routing(chosen, window)


def _top_experts(score: torch.Tensor, groups: int, size: int, k: int) -> torch.Tensor:
    """DeepSeek-V3's group-limited selection on scores [L, T, E]: experts [L, T, k]."""
    layers, tokens, experts = score.shape
    grouped = score.reshape(layers, tokens, groups, -1)
    group_score = grouped.topk(2, dim=-1).values.sum(dim=-1)
    keep = torch.zeros(layers, tokens, groups, dtype=torch.bool).scatter_(
        -1, group_score.topk(size, dim=-1).indices, True)
    masked = grouped.masked_fill(~keep[..., None], float("-inf")).reshape(score.shape)
    return masked.topk(k, dim=-1).indices


def dispatch(routing: Routing, phy2log: np.ndarray, topo: serving.Topology,
             hw: serving.Hardware, replica_choice: str = "even", seed: int = 1) -> dict:
    """Per layer [L]: transfers per token under each rule, and modelled MoE seconds of
    the window under `hw.dispatch`, for the placement phy2log [L, R]."""
    gen = torch.Generator().manual_seed(seed)
    layers, tokens, k = routing.experts.shape
    slots_per_gpu = topo.num_replicas // topo.num_gpus
    per_node, nodes = topo.gpus_per_node, topo.num_nodes
    placement = torch.as_tensor(phy2log, dtype=torch.long)
    # the slots of each expert, in slot order: expert e's are order[start[e]:start[e]+cnt[e]]
    order = placement.argsort(dim=1, stable=True)
    count = torch.zeros(layers, topo.experts, dtype=torch.long).scatter_add_(
        1, placement, torch.ones_like(placement))
    start = count.cumsum(dim=1) - count
    expert = routing.experts
    pick = (torch.rand(layers, tokens, k, generator=gen) * count.gather(
        1, expert.reshape(layers, -1)).reshape(expert.shape)).long()
    slot = order.gather(1, (start.gather(1, expert.reshape(layers, -1)).reshape(expert.shape)
                            + pick).reshape(layers, -1)).reshape(expert.shape)
    source = torch.randint(topo.num_gpus, (layers, tokens, 1), generator=gen)
    if replica_choice == "own_gpu_first":
        own = torch.full((layers, topo.num_gpus, topo.experts), -1, dtype=torch.long)
        gpu_of_slot = torch.arange(topo.num_replicas) // slots_per_gpu
        for s in reversed(range(topo.num_replicas)):  # the first replica on the GPU wins
            own[torch.arange(layers), gpu_of_slot[s], placement[:, s]] = s
        mine = own[torch.arange(layers)[:, None, None], source, expert]
        slot = torch.where(mine >= 0, mine, slot)
    gpu = slot // slots_per_gpu
    node, src_node = gpu // per_node, source // per_node
    remote = node != src_node
    group = expert // (topo.experts // topo.num_groups)

    def distinct(cell: torch.Tensor, cells: int, mask: torch.Tensor) -> torch.Tensor:
        """Per token, the distinct cells among its masked copies: [L, T, cells] bool."""
        hit = torch.zeros(layers, tokens, cells + 1, dtype=torch.bool)
        return hit.scatter_(-1, torch.where(mask, cell, cells), True)[..., :cells]

    nodes_hit = distinct(node, nodes, remote)
    gpus_hit = distinct(gpu, topo.num_gpus, torch.ones_like(remote))
    per_group_node = distinct(group * nodes + node, topo.num_groups * nodes, remote).sum(-1)
    scale = routing.window_tokens / tokens
    flat = (torch.arange(layers)[:, None] * topo.num_gpus)

    def per_gpu(cell: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """Messages per GPU [L, G], window-scaled, from GPU cells [L, ...] where mask."""
        idx = (flat.reshape(layers, *[1] * (cell.dim() - 1)) + cell)[mask]
        counts = torch.bincount(idx, minlength=layers * topo.num_gpus).reshape(layers, -1)
        return counts.double().numpy() * scale[:, None]

    copies = per_gpu(gpu, torch.ones_like(remote))
    local_rank = source % per_node
    if hw.dispatch == "low_latency":
        rdma = per_gpu(gpu, remote)
        nvlink = per_gpu(gpu, ~remote & (gpu != source))
    else:
        arrival = torch.arange(nodes)[None, None, :] * per_node + local_rank  # [L, T, N]
        rdma = per_gpu(arrival, nodes_hit)
        every_gpu = torch.arange(topo.num_gpus)[None, None, :]
        entry = torch.where(every_gpu // per_node == src_node, source, every_gpu // per_node
                            * per_node + local_rank)
        nvlink = per_gpu(every_gpu.expand(layers, tokens, -1), gpus_hit & (every_gpu != entry))
    seconds = (copies * hw.seconds_per_copy
               + nvlink * hw.bytes_per_copy / (hw.intra_node_gbps * 1e9)
               + rdma * hw.bytes_per_copy / (hw.inter_node_gbps * 1e9)).max(axis=1)
    return {"per_group_node": per_group_node.double().mean(1).numpy(),
            "normal": nodes_hit.sum(-1).double().mean(1).numpy(),
            "low_latency": remote.sum(-1).double().mean(1).numpy(),
            "seconds": seconds}
