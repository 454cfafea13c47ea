"""A step-time model of an expert-parallel MoE layer: what a placement costs in serving.

It is a model, not a measurement. For one layer and one window of loads (token copies
routed to each expert, summed over the window's steps), with each expert's load split
evenly over its replicas (as everywhere in the evaluator):

  r_g        token copies GPU g receives (the sum of its slots' loads)
  compute_g  = r_g * t_copy,       t_copy = 6 * hidden * moe_intermediate / achievable FLOP/s
             (one expert is three hidden x intermediate matrices: 2 FLOPs per weight)
  nvlink_g   = r_g * (1 - 1/gpus_per_node) * b / intra_node_bandwidth
             b = hidden * (dispatch_bytes + combine_bytes): the copy goes out (FP8 dispatch)
             and comes back (BF16 combine); it arrives at a uniformly random GPU of the
             node (its source, or the GPU its inter-node transfer landed on) and is
             forwarded over NVLink unless that is g
  ib_n       inter-node transfers into node n. Tokens start evenly on all GPUs
             (data-parallel attention), so a share (N-1)/N of the transfers into a node
             come from other nodes; a token sends one transfer per (group, node) it needs,
             not one per expert (DeepEP's IB-then-NVLink forwarding, dedup taken within
             an expert group only). A token that selects group j puts c = experts_per_token
             / groups_per_token copies into it; with q_jn the share of group j's load on
             node n's replicas and the c copies independent,
                 ib_n = (N-1)/N * sum_j (W_j / c) * (1 - (1 - q_jn)^c)
             W_j the group's load. ib_n is smallest (W_j / c per group) when every group
             lives on one node.
  ib_g       = ib_n(g) * b / (gpus_per_node * inter_node_bandwidth): a node's transfers
             share its GPUs' network cards
  time       = max over GPUs of (compute_g + nvlink_g + ib_g), no overlap of
             communication with computation
  ideal      = the same with every GPU at the mean load and every group on one node,
             its traffic spread evenly over nodes: a lower bound of time, so
             ideal / time is in (0, 1] and 1 for a balanced placement of packed groups.

Times are linear in the load: the whole window's loads give the window's MoE seconds
(attention and dense layers are not modelled) and / steps the per-step time. The model
leaves out: overlap of communication and compute, per-message latency, the sending
side of each link, and dedup of a token's transfers across groups.

Migration (per rebalance): a slot whose expert changed receives expert_bytes, over
NVLink when the old placement had that expert on the slot's node, else over the network;
migration_seconds = max over GPUs of intra_bytes / intra_bw + inter_bytes / inter_bw.

Sources: DeepSeek-V3 (hidden 7168, expert intermediate 2048, top-8 of 256 experts in at
most 4 of 8 groups, FP8 dispatch, BF16 combine); DeepEP's README (H800: ~160 GB/s NVLink,
CX7 400 Gb/s InfiniBand ~50 GB/s; measured ~153-158 GB/s intranode and ~43-47 GB/s
internode); DeepGEMM's README (up to ~1550 FP8 TFLOP/s on H800). Achievable numbers
below are assumptions stated as such.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

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
    bad = [f.name for f in fields(Hardware) if f.name != "name"
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


def traffic(unit_loads: np.ndarray, unit_gpu: np.ndarray, unit_group: np.ndarray,
            topo: Topology) -> tuple[np.ndarray, np.ndarray]:
    """(GPU loads [..., L, G], group loads per node [..., L, groups, N]) of units (slots, or
    experts placed once) with loads [..., L, U], on GPUs unit_gpu [U], of groups [L, U]."""
    *lead, layers, units = unit_loads.shape
    flat = unit_loads.reshape(-1, layers * units)
    rows = np.arange(len(flat))[:, None]
    layer = np.arange(layers)[:, None]
    gpu_cell = (layer * topo.num_gpus + unit_gpu[None, :]).ravel()
    node = unit_gpu // topo.gpus_per_node
    group_cell = ((layer * topo.num_groups + unit_group) * topo.num_nodes + node).ravel()
    cells = layers * topo.num_gpus, layers * topo.num_groups * topo.num_nodes
    gpus = np.bincount((rows * cells[0] + gpu_cell).ravel(), weights=flat.ravel(),
                       minlength=len(flat) * cells[0])
    groups = np.bincount((rows * cells[1] + group_cell).ravel(), weights=flat.ravel(),
                         minlength=len(flat) * cells[1])
    return (gpus.reshape(*lead, layers, topo.num_gpus),
            groups.reshape(*lead, layers, topo.num_groups, topo.num_nodes))


def network_transfers(group_node: np.ndarray, topo: Topology, hw: Hardware) -> np.ndarray:
    """Inter-node transfers into each node, [..., L, N], from group loads per node."""
    c = topo.copies_per_group(hw)
    totals = group_node.sum(axis=-1, keepdims=True)
    share = np.divide(group_node, totals, out=np.zeros_like(group_node), where=totals > 0)
    touched = 1.0 - (1.0 - share) ** c
    remote = (topo.num_nodes - 1) / topo.num_nodes
    return remote * (totals / c * touched).sum(axis=-2)


def layer_seconds(gpu_loads: np.ndarray, node_transfers: np.ndarray, topo: Topology,
                  hw: Hardware) -> np.ndarray:
    """MoE time of each layer, [..., L]: the slowest GPU's compute + NVLink + network."""
    per_node = topo.gpus_per_node
    local = hw.seconds_per_copy + (1 - 1 / per_node) * hw.bytes_per_copy / (
        hw.intra_node_gbps * 1e9)
    network = node_transfers * hw.bytes_per_copy / (per_node * hw.inter_node_gbps * 1e9)
    per_gpu = gpu_loads * local + np.repeat(network, per_node, axis=-1)
    return per_gpu.max(axis=-1)


def ideal_layer_seconds(expert_loads: np.ndarray, topo: Topology, hw: Hardware) -> np.ndarray:
    """The lower bound [..., L]: GPUs at the mean load, each group's traffic on one node,
    spread evenly over nodes."""
    total = expert_loads.sum(axis=-1)
    gpu = (total / topo.num_gpus)[..., None]
    even = total / topo.copies_per_group(hw) * (topo.num_nodes - 1) / topo.num_nodes ** 2
    nodes = np.repeat(even[..., None], topo.num_nodes, axis=-1)
    return layer_seconds(gpu, nodes, topo, hw)


def unit_seconds(unit_loads: np.ndarray, unit_gpu: np.ndarray, unit_group: np.ndarray,
                 topo: Topology, hw: Hardware) -> np.ndarray:
    """MoE seconds per layer [..., L] of units with loads [..., L, U] (see `traffic`)."""
    gpus, group_node = traffic(unit_loads, unit_gpu, unit_group, topo)
    return layer_seconds(gpus, network_transfers(group_node, topo, hw), topo, hw)


def placement_seconds(expert_loads: np.ndarray, phy2log: np.ndarray, counts: np.ndarray,
                      topo: Topology, hw: Hardware) -> np.ndarray:
    """MoE seconds per layer [..., L] of a placement on loads [..., L, E] (window sums)."""
    per_replica = expert_loads / np.maximum(counts, 1)
    slots = np.take_along_axis(per_replica, np.broadcast_to(
        phy2log, (*expert_loads.shape[:-1], phy2log.shape[-1])), axis=-1)
    slot_gpu = np.arange(topo.num_replicas) // (topo.num_replicas // topo.num_gpus)
    return unit_seconds(slots, slot_gpu, phy2log // (topo.experts // topo.num_groups),
                        topo, hw)


def no_replication_seconds(expert_loads: np.ndarray, topo: Topology,
                           hw: Hardware) -> np.ndarray:
    """MoE seconds per layer [..., L] with every expert once, in order over the GPUs (the
    evaluator's no-replication reference layout)."""
    layers, experts = expert_loads.shape[-2:]
    group = np.broadcast_to(np.arange(experts) // (experts // topo.num_groups),
                            (layers, experts))
    return unit_seconds(expert_loads, np.arange(experts) * topo.num_gpus // experts, group,
                        topo, hw)


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
    present = np.zeros((layers, topo.num_nodes, topo.experts), dtype=bool)
    present[np.arange(layers)[:, None], node_of_slot[None, :], previous] = True
    on_node = present[np.arange(layers)[:, None], node_of_slot[None, :], current]
    intra = (changed & on_node).reshape(layers, topo.num_gpus, -1).sum(axis=(0, 2))
    inter = (changed & ~on_node).reshape(layers, topo.num_gpus, -1).sum(axis=(0, 2))
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
