"""A step-time model of an expert-parallel MoE layer: what a placement costs in serving.

It is a model, not a measurement. For one layer and one window of loads (token copies
routed to each expert, summed over the window's steps; tokens = copies / experts_per_token),
with each expert's load split evenly over its replicas (as everywhere in the evaluator;
a copy goes to any replica of its expert with equal chance, wherever its token is):

  r_g        token copies GPU g serves (the sum of its slots' loads)
  compute_g  = r_g * t_copy,       t_copy = 6 * hidden * moe_intermediate / achievable FLOP/s
             (one expert is three hidden x intermediate matrices: 2 FLOPs per weight)
  b          = hidden * (dispatch_bytes + combine_bytes): a message goes out (FP8 dispatch)
             and comes back (BF16 combine)
  Tokens start evenly on all GPUs (data-parallel attention). `hardware.dispatch` picks
  DeepEP's kernels:
  normal     (high-throughput, prefill) a token crosses the network once per remote node
             holding any of its copies, whatever their groups, to the GPU of its own local
             rank there, and is forwarded over NVLink inside the node:
                 ib_n = tokens * (N-1)/N * P(the token has a copy on node n)
             P from `nodes_touched` (group-limited routing, conditional Poisson sampling
             of the groups, c = experts_per_token / groups_per_token independent copies
             per chosen group); ib_g = ib_n(g) / gpus_per_node;
             nvlink_g = r_g * (1 - 1/gpus_per_node)
  low_latency (pure RDMA, decode) one message per copy served on another node, straight
             to its GPU, no forwarding and no dedup: ib_g = r_g * (N-1)/N;
             nvlink_g = r_g * (1 - 1/gpus_per_node) / N (copies from the node's others)
  time       = max over GPUs of (compute_g + nvlink_g * b / intra_bw + ib_g * b / inter_bw),
             no overlap of communication with computation
  ideal      = the same with every GPU at the mean load and the network traffic of packed
             groups (each group whole on one node, `packed_layout`) spread evenly over
             GPUs: a reference, 1.0 for a balanced placement of packed groups

Approximations (tests/token_dispatch_sim.py, a token-level simulation, checks them
within 10%): each chosen group gets exactly c copies, independent of each other, and
tokens differ only by chance (no correlated preferences); NVLink is counted per copy,
where DeepEP sends one message per (token, GPU); the replica each copy goes to is drawn
evenly (SGLang's static dispatch prefers a replica on the token's own GPU: the
simulation measures that it changes transfers by under 1%).

Times are linear in the load: the whole window's loads give the window's MoE seconds
(attention and dense layers are not modelled) and / steps the per-step time. The model
leaves out: overlap of communication and compute, per-message latency, the sending
side of each link, and memory-bound decode GEMMs.

Migration (per rebalance): a slot whose expert changed receives expert_bytes, over
NVLink when the old placement had that expert on the slot's node, else over the network;
migration_seconds = max over GPUs of intra_bytes / intra_bw + inter_bytes / inter_bw.

Sources: DeepSeek-V3 (hidden 7168, expert intermediate 2048, top-8 of 256 experts in at
most 4 of 8 groups, FP8 dispatch, BF16 combine); DeepEP's README (normal kernels forward
from the RDMA to the NVLink domain, low-latency kernels are pure RDMA; H800: ~160 GB/s NVLink,
CX7 400 Gb/s InfiniBand ~50 GB/s; measured ~153-158 GB/s intranode and ~43-47 GB/s
internode); DeepGEMM's README (up to ~1550 FP8 TFLOP/s on H800). Achievable numbers
below are assumptions stated as such.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class Hardware:
    """One deployment's numbers; bandwidths in GB/s per GPU and direction."""

    name: str
    achievable_tflops: float        # sustained expert GEMM throughput per GPU
    intra_node_gbps: float          # NVLink (or HCCS) per GPU
    inter_node_gbps: float          # the GPU's network card
    hidden_size: int = 7168
    moe_intermediate_size: int = 2048
    dispatch_bytes: float = 1.0     # per activation element sent (FP8)
    combine_bytes: float = 2.0      # per activation element returned (BF16)
    experts_per_token: int = 8
    groups_per_token: int = 4
    dispatch: str = "normal"        # DeepEP's kernels: normal | low_latency

    @property
    def seconds_per_copy(self) -> float:
        """Compute time of one token in one expert."""
        flops = 6.0 * self.hidden_size * self.moe_intermediate_size
        return flops / (self.achievable_tflops * 1e12)

    @property
    def bytes_per_copy(self) -> float:
        """Bytes one token copy moves out and back."""
        return self.hidden_size * (self.dispatch_bytes + self.combine_bytes)


PRESETS = {
    # 8 x H800 per node, NVLink ~160 GB/s, one CX7 400 Gb/s NIC per GPU (DeepEP's set-up);
    # 1000 TFLOP/s is ~2/3 of DeepGEMM's best FP8 figure (assumption)
    "h800_ib400": Hardware("h800_ib400", achievable_tflops=1000.0, intra_node_gbps=155.0,
                           inter_node_gbps=45.0),
    # 8 x H20 per node: 296 dense FP8 TFLOP/s peak (200 assumed achievable), NVLink
    # 900 GB/s bidirectional (~360 GB/s achievable per direction assumed), 400 Gb/s NIC
    "h20_ib400": Hardware("h20_ib400", achievable_tflops=200.0, intra_node_gbps=360.0,
                          inter_node_gbps=45.0),
}


CHOICES = {"dispatch": ("normal", "low_latency")}


def hardware(preset: str, **overrides) -> Hardware:
    """The named preset with some fields replaced (None leaves a field as it is)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown hardware preset {preset!r}; the presets are "
                         f"{', '.join(sorted(PRESETS))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - {f.name for f in fields(Hardware)}
    if unknown:
        raise ValueError(f"unknown hardware fields {sorted(unknown)}")
    chosen = replace(PRESETS[preset], **given)
    for name, allowed in CHOICES.items():
        if getattr(chosen, name) not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; got "
                             f"{getattr(chosen, name)!r}")
    bad = [f.name for f in fields(Hardware) if f.name not in ("name", *CHOICES)
           and not getattr(chosen, f.name) > 0]
    if bad or chosen.groups_per_token > chosen.experts_per_token:
        raise ValueError(f"hardware {preset}: {', '.join(bad) or 'groups_per_token'} must be "
                         "> 0 (and groups_per_token <= experts_per_token)")
    return chosen


@dataclass(frozen=True)
class Topology:
    """Where slots live: GPU and node of each slot, groups of experts."""

    num_replicas: int
    num_gpus: int
    num_nodes: int
    num_groups: int
    experts: int

    @property
    def gpus_per_node(self) -> int:
        return self.num_gpus // self.num_nodes

    def copies_per_group(self, hw: Hardware) -> float:
        """Copies a token puts into each group it selects."""
        return hw.experts_per_token / min(hw.groups_per_token, self.num_groups)


class Cost(NamedTuple):
    """Modelled MoE seconds and inter-node transfers per routed token, both [..., L]."""

    seconds: np.ndarray
    transfers_per_token: np.ndarray


def elementary_symmetric(x: np.ndarray, size: int) -> np.ndarray:
    """Elementary symmetric polynomials e_0..e_size [..., size + 1] of x's last axis."""
    e = np.zeros((size + 1, *x.shape[:-1]))  # degree first: contiguous updates
    e[0] = 1.0
    for j, item in enumerate(np.moveaxis(x, -1, 0)):
        top = min(j + 1, size)  # e_k = 0 for k > j + 1 until then
        e[1:top + 1] += item * e[:top]
    return np.moveaxis(e, 0, -1)


def _inclusion(x: np.ndarray, size: int) -> np.ndarray:
    """Each item's inclusion probability when `size` of them are drawn with P(S)
    proportional to the product of x over S (conditional Poisson sampling)."""
    items = x.shape[-1]
    others = np.where(np.eye(items, dtype=bool), 0.0, x[..., None, :])  # [..., j, items]
    without = elementary_symmetric(others, size - 1)[..., size - 1]
    return x * without / np.maximum(elementary_symmetric(x, size)[..., size, None], 1e-300)


def subset_weights(chosen: np.ndarray, size: int, iterations: int = 0) -> np.ndarray:
    """Weights x [..., J] of conditional Poisson sampling of `size` of J items whose
    inclusion probabilities are `chosen` [..., J] (summing to size): the odds (exact for
    equal chances; on the project's traces within 0.7% of the converged weights in
    transfers per token, which the model uses to stay fast), then `iterations`
    fixed-point steps."""
    target = np.clip(chosen, 1e-9, 1 - 1e-6)
    odds = target / (1 - target)
    x = odds / odds.max(axis=-1, keepdims=True)
    if size >= chosen.shape[-1]:
        return x
    for _ in range(iterations):
        got = np.clip(_inclusion(x, size), 1e-12, 1 - 1e-12)
        x = x * odds * (1 - got) / got
        x = x / x.max(axis=-1, keepdims=True)
    return x


def _per_gpu(values: np.ndarray, unit_gpu: np.ndarray, topo: Topology) -> np.ndarray:
    """Sum [B, L, U] unit values onto their GPUs: [B, L, G]."""
    batch, layers, units = values.shape
    cell = (np.arange(batch * layers)[:, None] * topo.num_gpus + unit_gpu[None, :]).ravel()
    return np.bincount(cell, weights=values.ravel(), minlength=batch * layers * topo.num_gpus
                       ).reshape(batch, layers, topo.num_gpus)


def nodes_touched(loads: np.ndarray, node_share: np.ndarray, topo: Topology,
                  hw: Hardware) -> np.ndarray:
    """The chance [B, L, N] that a token has a copy on each node, from expert loads
    [B, L, E] and the share of each expert's copies served on each node [L, E, N].

    A token picks `size` groups by conditional Poisson sampling (P(S) proportional to a
    product of weights over S, |S| = size) whose inclusion probabilities are the groups'
    loads / (c * tokens), and puts c independent copies into each, landing on node n
    with the group's load-weighted share q_jn; so P(no copy on n) = E_S prod_{j in S}
    (1 - q_jn)^c = e_size(x * a_n) / e_size(x), e the elementary symmetric polynomial."""
    batch, layers, experts = loads.shape
    groups, nodes = topo.num_groups, topo.num_nodes
    size, c = min(hw.groups_per_token, groups), topo.copies_per_group(hw)
    group_load = loads.reshape(batch, layers, groups, 1, -1)
    weight = group_load.sum(axis=-1)[..., 0]                                  # [B, L, J]
    landing = (group_load @ node_share.reshape(layers, groups, -1, nodes))[..., 0, :]
    share = np.clip(landing / np.maximum(weight, 1e-300)[..., None], 0, 1)   # [B, L, J, N]
    tokens = weight.sum(axis=-1, keepdims=True) / hw.experts_per_token
    x = subset_weights(weight / (c * np.maximum(tokens, 1e-300)), size)
    missed = np.moveaxis(x[..., None] * (1 - share) ** c, 2, -1)             # [B, L, N, J]
    e = elementary_symmetric(np.concatenate([missed, x[..., None, :]], axis=2), size)
    return 1 - e[..., :-1, size] / np.maximum(e[..., -1, size], 1e-300)[..., None]


def unit_cost(expert_loads: np.ndarray, unit_expert: np.ndarray, unit_gpu: np.ndarray,
              topo: Topology, hw: Hardware, even_gpus: bool = False) -> Cost:
    """MoE seconds and transfers per token [..., L] of units (slots, or experts placed
    once) holding experts unit_expert [L, U] on GPUs unit_gpu [U], under window loads
    [..., L, E], each expert's load split evenly over its units. even_gpus: every GPU at
    the mean load and the network traffic spread evenly over GPUs (the ideal)."""
    *lead, layers, experts = expert_loads.shape
    loads = np.asarray(expert_loads, dtype=float).reshape(-1, layers, experts)
    cell = np.arange(layers)[:, None] * experts + unit_expert  # each unit's (layer, expert)
    replicas = np.maximum(np.bincount(cell.ravel(), minlength=layers * experts), 1
                          ).reshape(layers, experts)
    per_unit = np.take((loads / replicas).reshape(len(loads), -1), cell, axis=1)  # [B, L, U]
    gpus = _per_gpu(per_unit, unit_gpu, topo)
    total = loads.sum(axis=-1)
    tokens = total / hw.experts_per_token
    remote = (topo.num_nodes - 1) / topo.num_nodes  # tokens start on any GPU
    if hw.dispatch == "low_latency":
        # one message per copy served on another node than its token's, to that GPU
        network = gpus * remote
    else:
        # one transfer per token and remote node holding any of its copies, landing on
        # the GPU of the token's local rank there (any of the node's GPUs, evenly)
        node_share = np.zeros((layers, experts, topo.num_nodes))  # units per node, then share
        np.add.at(node_share.reshape(-1), (cell * topo.num_nodes + unit_gpu // topo.gpus_per_node
                                           ).ravel(), 1.0)
        np.divide(node_share, replicas[..., None], out=node_share)
        into = tokens[..., None] * remote * nodes_touched(loads, node_share, topo, hw)
        network = np.repeat(into / topo.gpus_per_node, topo.gpus_per_node, axis=-1)
    transfers = network.sum(axis=-1)
    if even_gpus:
        gpus = np.repeat(total[..., None] / topo.num_gpus, topo.num_gpus, axis=-1)
        network = np.repeat(network.mean(axis=-1, keepdims=True), topo.num_gpus, axis=-1)
    per_token = np.divide(transfers, tokens, out=np.zeros_like(transfers), where=tokens > 0)
    return Cost(layer_seconds(gpus, network, topo, hw).reshape(*lead, layers),
                per_token.reshape(*lead, layers))


def layer_seconds(gpu_loads: np.ndarray, gpu_network: np.ndarray, topo: Topology,
                  hw: Hardware) -> np.ndarray:
    """MoE time of each layer [..., L]: the slowest GPU's compute + NVLink + network, from
    the copies each GPU serves and the inter-node transfers landing on its card [..., L, G]."""
    forwarded = 1 - 1 / topo.gpus_per_node
    if hw.dispatch == "low_latency":
        forwarded /= topo.num_nodes  # only copies from the node's other GPUs use NVLink
    local = hw.seconds_per_copy + forwarded * hw.bytes_per_copy / (hw.intra_node_gbps * 1e9)
    network = gpu_network * hw.bytes_per_copy / (hw.inter_node_gbps * 1e9)
    return (gpu_loads * local + network).max(axis=-1)


def packed_layout(topo: Topology) -> tuple[np.ndarray, np.ndarray]:
    """(unit_expert [1, E], unit_gpu [E]): every expert once, each group whole on one node
    (group j on node j * N // groups), its experts dealt over that node's GPUs."""
    experts = np.arange(topo.experts)
    node = experts // (topo.experts // topo.num_groups) * topo.num_nodes // topo.num_groups
    return experts[None, :], node * topo.gpus_per_node + experts % topo.gpus_per_node


def ideal_layer_seconds(expert_loads: np.ndarray, topo: Topology, hw: Hardware) -> np.ndarray:
    """The reference [..., L]: GPUs at the mean load, and the network traffic of packed
    groups (`packed_layout`) spread evenly over GPUs."""
    unit_expert, unit_gpu = packed_layout(topo)
    return unit_cost(expert_loads, np.broadcast_to(unit_expert, (
        expert_loads.shape[-2], topo.experts)), unit_gpu, topo, hw, even_gpus=True).seconds


def placement_cost(expert_loads: np.ndarray, phy2log: np.ndarray, topo: Topology,
                   hw: Hardware) -> Cost:
    """MoE seconds and transfers per token [..., L] of a placement on loads [..., L, E]."""
    slot_gpu = np.arange(topo.num_replicas) // (topo.num_replicas // topo.num_gpus)
    return unit_cost(expert_loads, phy2log, slot_gpu, topo, hw)


def placement_seconds(expert_loads: np.ndarray, phy2log: np.ndarray, topo: Topology,
                      hw: Hardware) -> np.ndarray:
    """MoE seconds per layer [..., L] of a placement on loads [..., L, E] (window sums)."""
    return placement_cost(expert_loads, phy2log, topo, hw).seconds


def no_replication_seconds(expert_loads: np.ndarray, topo: Topology,
                           hw: Hardware) -> np.ndarray:
    """MoE seconds per layer [..., L] with every expert once, in order over the GPUs (the
    evaluator's no-replication reference layout)."""
    layers, experts = expert_loads.shape[-2:]
    unit_expert = np.broadcast_to(np.arange(experts), (layers, experts))
    return unit_cost(expert_loads, unit_expert, np.arange(experts) * topo.num_gpus // experts,
                     topo, hw).seconds


def migration_seconds(previous: np.ndarray | None, current: np.ndarray, topo: Topology,
                      hw: Hardware, expert_bytes: float) -> float:
    """Seconds to load the new experts: max over GPUs of its bytes over NVLink (the expert
    was on the slot's node before) plus its bytes over the network (it was not)."""
    if previous is None or expert_bytes <= 0:
        return 0.0
    layers, replicas = current.shape
    changed = previous != current
    if not changed.any():
        return 0.0
    node_of_slot = np.arange(replicas) // (replicas // topo.num_nodes)
    row = (np.arange(layers)[:, None] * topo.num_nodes + node_of_slot) * topo.experts
    present = np.zeros(layers * topo.num_nodes * topo.experts, dtype=bool)  # (layer, node, e)
    present[row + previous] = True
    on_node = present[row + current]
    intra, inter = ((changed & moved).reshape(layers, topo.num_gpus, -1).sum(axis=0).sum(
        axis=-1) for moved in (on_node, ~on_node))
    seconds = expert_bytes * (intra / (hw.intra_node_gbps * 1e9)
                              + inter / (hw.inter_node_gbps * 1e9))
    return float(seconds.max())


def window_seconds(new_s: float, old_s: float, migration_s: float, mode: str) -> float:
    """Serving time of one window with its migration: `stop_the_world` stalls for the
    migration first; `async` keeps serving with the old placement (old_s per window) until
    the new one is loaded, migration_s later (at most the whole window)."""
    if migration_s <= 0:
        return new_s
    if mode == "stop_the_world":
        return new_s + migration_s
    lag = min(1.0, migration_s / old_s) if old_s > 0 else 0.0
    return lag * old_s + (1.0 - lag) * new_s
