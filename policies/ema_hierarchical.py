"""Reference policy: DeepSeek's hierarchical balancer on a moving average of the load.

History-aware: the placement is computed from an exponential moving average of the
previous windows and the current one instead of the current window alone, so one
noisy window moves fewer replicas and the placement forecasts the next window better
when load drifts slowly.

    rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, history=None)

`history` is an int64 tensor [H, L, E] of previous windows' loads, oldest first, not
including `weight`; H may be 0. The average starts at the oldest window and each newer
window (ending with `weight`) gets weight ALPHA: avg = ALPHA * newer + (1 - ALPHA) * avg.
Raw token counts are averaged (windows have the same number of steps). Without history
(None or H == 0) the result is exactly the baseline's on `weight`. Self-contained: the
sandbox cannot import project files.
"""

import numpy as np
import torch

# EVOLVE-BLOCK-START


def balanced_packing(weight: torch.Tensor, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack the n items of each row into num_packs packs of n/num_packs items.

    Greedy: items in descending weight order, each to the lightest pack that
    still has room. Returns (pack_index, rank_in_pack), both int64 [rows, n].
    """
    rows, n = weight.shape
    per_pack = n // num_packs
    if per_pack == 1:
        pack_index = np.broadcast_to(np.arange(n, dtype=np.int64), (rows, n)).copy()
        return pack_index, np.zeros((rows, n), dtype=np.int64)

    order = weight.sort(-1, descending=True).indices.numpy()
    values = weight.numpy()
    pack_load = np.zeros((rows, num_packs), dtype=np.float32)
    pack_size = np.zeros((rows, num_packs), dtype=np.int64)
    pack_index = np.empty((rows, n), dtype=np.int64)
    rank_in_pack = np.empty((rows, n), dtype=np.int64)
    row = np.arange(rows)
    for k in range(n):
        item = order[:, k]
        pack = np.where(pack_size < per_pack, pack_load, np.inf).argmin(axis=1)
        pack_index[row, item] = pack
        rank_in_pack[row, item] = pack_size[row, pack]
        pack_load[row, pack] += values[row, item]
        pack_size[row, pack] += 1
    return pack_index, rank_in_pack


def replicate_experts(weight: np.ndarray, num_slots: int):
    """Give num_slots - n extra replicas, each to the expert with the most load per replica.

    Returns (slot2expert, replica_rank, count), int64 [rows, num_slots],
    [rows, num_slots] and [rows, n].
    """
    rows, n = weight.shape
    slot2expert = np.tile(np.arange(num_slots, dtype=np.int64), (rows, 1))
    replica_rank = np.zeros((rows, num_slots), dtype=np.int64)
    count = np.ones((rows, n), dtype=np.int64)
    row = np.arange(rows)
    for slot in range(n, num_slots):
        hottest = (weight / count.astype(np.float32)).argmax(axis=1)
        slot2expert[:, slot] = hottest
        replica_rank[:, slot] = count[row, hottest]
        count[row, hottest] += 1
    return slot2expert, replica_rank, count


def inverse_permutation(perm: np.ndarray) -> np.ndarray:
    """Row-wise inverse of a batch of permutations."""
    inv = np.empty_like(perm)
    np.put_along_axis(inv, perm, np.arange(perm.shape[1], dtype=perm.dtype)[None, :], axis=1)
    return inv


def rebalance_hierarchical(weight: torch.Tensor, num_slots: int, num_groups: int,
                           num_nodes: int, num_gpus: int):
    """Groups to nodes, replicas within each node, replicas to the node's GPUs.

    Returns (phy2log, replica_rank, logcnt) as int64 numpy arrays.
    """
    layers, experts = weight.shape
    group_size = experts // num_groups
    groups_per_node = num_groups // num_nodes
    experts_per_node = experts // num_nodes
    slots_per_node = num_slots // num_nodes
    slots_per_gpu = num_slots // num_gpus

    # 1. Pack expert groups onto nodes; number experts node by node ("node-major" ids).
    group_load = weight.unflatten(-1, (num_groups, group_size)).sum(-1)
    group_node, group_rank = balanced_packing(group_load, num_nodes)
    first_id = (group_node * groups_per_node + group_rank) * group_size
    log2node_major = (first_id[:, :, None] + np.arange(group_size)).reshape(layers, experts)
    node_major2log = inverse_permutation(log2node_major)

    # 2. Replicate hot experts within each node: rows are (layer, node) pairs.
    node_load = np.take_along_axis(weight.numpy(), node_major2log, axis=1)
    node_load = node_load.reshape(layers * num_nodes, experts_per_node)
    slot2local, slot_rank, local_count = replicate_experts(node_load, slots_per_node)

    # 3. Pack each node's replicas onto its GPUs.
    replica_load = np.take_along_axis(node_load / local_count.astype(np.float32), slot2local, 1)
    gpu, rank_on_gpu = balanced_packing(torch.from_numpy(replica_load), num_gpus // num_nodes)
    placed2slot = inverse_permutation(gpu * slots_per_gpu + rank_on_gpu)

    placed2local = np.take_along_axis(slot2local, placed2slot, axis=1)
    node_offset = (np.arange(num_nodes) * experts_per_node)[None, :, None]
    placed2node_major = (placed2local.reshape(layers, num_nodes, -1) + node_offset)
    phy2log = np.take_along_axis(node_major2log, placed2node_major.reshape(layers, -1), axis=1)
    replica_rank = np.take_along_axis(slot_rank, placed2slot, axis=1).reshape(layers, -1)
    logcnt = np.take_along_axis(local_count.reshape(layers, -1), log2node_major, axis=1)
    return phy2log, replica_rank, logcnt


ALPHA = 0.5  # weight of each newer window in the moving average


def moving_average(weight: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
    """EMA of history (oldest first) then weight; `weight` itself without history."""
    if history is None or len(history) == 0:
        return weight
    if tuple(history.shape[1:]) != tuple(weight.shape):
        raise ValueError(f"history has shape {tuple(history.shape)}, expected "
                         f"[H, {weight.shape[0]}, {weight.shape[1]}]")
    average = history[0].double()
    for window in [*history[1:], weight]:
        average = ALPHA * window.double() + (1 - ALPHA) * average
    return average


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int, history: torch.Tensor | None = None):
    """Place num_replicas replicas on num_gpus GPUs per layer, balancing the EMA load.

    Hierarchical policy when the groups divide evenly over the nodes, otherwise
    the global policy (one group, one node). Returns (phy2log, log2phy, logcnt).
    """
    layers, experts = weight.shape
    weight = moving_average(weight, history).float().cpu().contiguous()
    if num_groups % num_nodes == 0:
        phy2log, rank, logcnt = rebalance_hierarchical(
            weight, num_replicas, num_groups, num_nodes, num_gpus)
    else:
        phy2log, rank, logcnt = rebalance_hierarchical(weight, num_replicas, 1, 1, num_gpus)
    max_count = int(logcnt.max())
    log2phy = np.full((layers, experts, max_count), -1, dtype=np.int64)
    layer = np.arange(layers)[:, None]
    log2phy[layer, phy2log, rank] = np.arange(num_replicas, dtype=np.int64)[None, :]
    return torch.from_numpy(phy2log), torch.from_numpy(log2phy), torch.from_numpy(logcnt)


# EVOLVE-BLOCK-END
