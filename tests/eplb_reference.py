"""A plain, loop-by-loop reference of DeepSeek's hierarchical EPLB policy, for tests only.

Written from the description of the published algorithm, independently of
`initial.py`, and deliberately simple: one Python loop per layer and item.
Only the steps whose rounding or tie-breaking decides the exact output use
torch / float32, exactly as the published algorithm does:

  * the load order is `weight.sort(-1, descending=True).indices` of the whole
    float32 [rows, n] tensor (torch's default sort, not stable for large rows);
  * pack loads are float32 sums accumulated in item order;
  * group loads are `weight.unflatten(-1, (G, group_size)).sum(-1)` in float32;
  * load per replica is a float32 division.

Ties in packing and replication go to the lowest pack / expert index.
log2phy is padded with -1 to the largest replica count of any expert in any layer.
"""

from __future__ import annotations

import numpy as np
import torch


def pack(weight: torch.Tensor, num_packs: int) -> tuple[list[list[int]], list[list[int]]]:
    """Greedy balanced packing of every row of a float32 [rows, n] tensor.

    Each pack receives n / num_packs items. Returns per row the pack of each item
    and the item's position inside its pack (order of arrival).
    """
    rows, n = weight.shape
    capacity = n // num_packs
    if capacity == 1:
        # One item per pack: the published algorithm keeps items in place.
        return [list(range(n)) for _ in range(rows)], [[0] * n for _ in range(rows)]
    order = weight.sort(-1, descending=True).indices.tolist()
    values = weight.numpy()
    pack_of, rank_of = [], []
    for row in range(rows):
        loads = [np.float32(0.0)] * num_packs
        filled = [0] * num_packs
        item_pack, item_rank = [0] * n, [0] * n
        for item in order[row]:
            best = None
            for candidate in range(num_packs):
                if filled[candidate] >= capacity:
                    continue
                if best is None or loads[candidate] < loads[best]:
                    best = candidate
            item_pack[item] = best
            item_rank[item] = filled[best]
            loads[best] = np.float32(loads[best] + values[row, item])
            filled[best] += 1
        pack_of.append(item_pack)
        rank_of.append(item_rank)
    return pack_of, rank_of


def replicate(weight: np.ndarray, num_slots: int):
    """Fill num_slots slots per row: first every expert once, then one extra replica at a
    time to the expert with the highest float32 load per replica (lowest id on ties).

    Returns per row: expert of each slot, replica rank of each slot, replicas per expert.
    """
    rows, n = weight.shape
    slot_expert, slot_rank, counts = [], [], []
    for row in range(rows):
        experts = list(range(n))
        ranks = [0] * n
        count = [1] * n
        for _ in range(n, num_slots):
            best, best_value = 0, None
            for expert in range(n):
                value = np.float32(weight[row, expert]) / np.float32(count[expert])
                if best_value is None or value > best_value:
                    best, best_value = expert, value
            experts.append(best)
            ranks.append(count[best])
            count[best] += 1
        slot_expert.append(experts)
        slot_rank.append(ranks)
        counts.append(count)
    return slot_expert, slot_rank, counts


def hierarchical(weight: torch.Tensor, num_slots: int, num_groups: int, num_nodes: int,
                 num_gpus: int):
    """Groups to nodes, replicas inside each node, replicas to the node's GPUs.

    `weight` is float32 [layers, experts]. Returns plain lists per layer:
    expert of every slot, replica rank of every slot, replica count of every expert.
    """
    layers, experts = weight.shape
    group_size = experts // num_groups
    groups_per_node = num_groups // num_nodes
    experts_per_node = experts // num_nodes
    slots_per_node = num_slots // num_nodes
    gpus_per_node = num_gpus // num_nodes
    slots_per_gpu = num_slots // num_gpus
    values = weight.numpy()

    # Step 1: pack groups onto nodes, then give the experts new ids node by node.
    group_load = weight.unflatten(-1, (num_groups, group_size)).sum(-1)
    group_node, group_rank = pack(group_load, num_nodes)
    new_id_of = []   # per layer: logical expert -> node-major id
    logical_of = []  # per layer: node-major id -> logical expert
    for layer in range(layers):
        forward = [0] * experts
        for group in range(num_groups):
            first = (group_node[layer][group] * groups_per_node
                     + group_rank[layer][group]) * group_size
            for offset in range(group_size):
                forward[group * group_size + offset] = first + offset
        backward = [0] * experts
        for expert, new_id in enumerate(forward):
            backward[new_id] = expert
        new_id_of.append(forward)
        logical_of.append(backward)

    # Step 2: replicate inside each node; one row per (layer, node).
    node_rows = np.zeros((layers * num_nodes, experts_per_node), dtype=np.float32)
    for layer in range(layers):
        for node in range(num_nodes):
            for local in range(experts_per_node):
                expert = logical_of[layer][node * experts_per_node + local]
                node_rows[layer * num_nodes + node, local] = values[layer, expert]
    slot_local, slot_rank, local_count = replicate(node_rows, slots_per_node)

    # Step 3: pack each node's replicas onto its GPUs by load per replica.
    replica_load = np.zeros((layers * num_nodes, slots_per_node), dtype=np.float32)
    for row in range(layers * num_nodes):
        for slot in range(slots_per_node):
            local = slot_local[row][slot]
            replica_load[row, slot] = (np.float32(node_rows[row, local])
                                       / np.float32(local_count[row][local]))
    gpu_of, position_of = pack(torch.from_numpy(replica_load), gpus_per_node)

    phy2log = [[0] * num_slots for _ in range(layers)]
    phy_rank = [[0] * num_slots for _ in range(layers)]
    logcnt = [[0] * experts for _ in range(layers)]
    for layer in range(layers):
        for node in range(num_nodes):
            row = layer * num_nodes + node
            for slot in range(slots_per_node):
                placed = (node * slots_per_node + gpu_of[row][slot] * slots_per_gpu
                          + position_of[row][slot])
                new_id = node * experts_per_node + slot_local[row][slot]
                phy2log[layer][placed] = logical_of[layer][new_id]
                phy_rank[layer][placed] = slot_rank[row][slot]
        for expert in range(experts):
            new_id = new_id_of[layer][expert]
            node, local = divmod(new_id, experts_per_node)
            logcnt[layer][expert] = local_count[layer * num_nodes + node][local]
    return phy2log, phy_rank, logcnt


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int):
    """Reference placement: (phy2log [L, R], log2phy [L, E, K], logcnt [L, E]), int64."""
    weight = weight.float().cpu().contiguous()
    layers, experts = weight.shape
    if num_groups % num_nodes == 0:
        phy2log, rank, logcnt = hierarchical(weight, num_replicas, num_groups, num_nodes,
                                             num_gpus)
    else:  # groups cannot stay together per node: one group, one node
        phy2log, rank, logcnt = hierarchical(weight, num_replicas, 1, 1, num_gpus)
    width = max(max(row) for row in logcnt)
    log2phy = [[[-1] * width for _ in range(experts)] for _ in range(layers)]
    for layer in range(layers):
        for slot in range(num_replicas):
            log2phy[layer][phy2log[layer][slot]][rank[layer][slot]] = slot
    return tuple(torch.tensor(data, dtype=torch.int64) for data in (phy2log, log2phy, logcnt))
