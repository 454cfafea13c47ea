"""Reference policy (rival): optimal replica counts, then longest-processing-time packing.

    rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)

1. Replica counts that minimise the largest per-replica load max_e w_e / c_e subject to
   sum_e c_e = num_replicas, c_e >= 1: water-filling, by bisection on the level t with
   c_e(t) = max(1, ceil(w_e / t)) (the smallest feasible level is the optimum; exact up to
   float rounding); slots left over go to the experts with the largest load per replica.
2. Longest-processing-time packing of the replicas onto the GPUs (num_replicas / num_gpus
   slots each): heaviest replica first, each to the lightest GPU with a free slot.
3. Pairwise swaps between the heaviest GPU and one of the PARTNERS lightest while a
   swap lowers both below the layer's maximum (a few rounds, all layers at once).

Topology-blind (groups and nodes are ignored), like DeepSeek's global policy. Written from
the published descriptions of these classic algorithms; self-contained (torch and numpy
only), vectorised over layers.
"""

import numpy as np
import torch

SWAP_ROUNDS = 16
BISECTIONS = 48  # halvings of the water level: far below one token of precision
PARTNERS = 8     # a swap pairs the heaviest GPU with one of the 8 lightest

# EVOLVE-BLOCK-START


def water_fill(load: np.ndarray, slots: int) -> np.ndarray:
    """Replica counts [L, E] minimising the max per-replica load of each layer."""
    layers, experts = load.shape
    low, high = np.zeros(layers), load.max(axis=1)
    for _ in range(BISECTIONS):
        mid = (low + high) / 2
        need = np.maximum(1, np.ceil(np.divide(load, mid[:, None], out=np.zeros_like(load),
                                               where=mid[:, None] > 0))).sum(axis=1)
        fits = (need <= slots) & (mid > 0)
        high, low = np.where(fits, mid, high), np.where(fits, low, mid)
    counts = np.maximum(1, np.ceil(np.divide(load, high[:, None], out=np.zeros_like(load),
                                             where=high[:, None] > 0))).astype(np.int64)
    left = slots - counts.sum(axis=1)
    while (left > 0).any():
        order = np.argsort(-(load / counts), axis=1, kind="stable")
        take = np.arange(experts)[None, :] < np.minimum(left, experts)[:, None]
        np.put_along_axis(counts, order, np.take_along_axis(counts, order, 1) + take, axis=1)
        left = slots - counts.sum(axis=1)
    return counts


def lpt_pack(counts: np.ndarray, load: np.ndarray, num_gpus: int) -> np.ndarray:
    """phy2log [L, R]: longest processing time first, in rounds of one replica per GPU:
    each round the next num_gpus heaviest replicas go to the GPUs from the lightest up."""
    layers, _ = counts.shape
    replicas = int(counts[0].sum())
    per_gpu = replicas // num_gpus
    expert = np.stack([np.repeat(np.arange(counts.shape[1]), c) for c in counts])
    share = np.take_along_axis(load / counts, expert, axis=1)
    order = np.argsort(-share, axis=1, kind="stable")
    gpu_load = np.zeros((layers, num_gpus))
    phy2log = np.empty((layers, num_gpus, per_gpu), dtype=np.int64)
    row = np.arange(layers)[:, None]
    for k in range(per_gpu):
        items = order[:, k * num_gpus:(k + 1) * num_gpus]      # heaviest first
        gpus = np.argsort(gpu_load, axis=1, kind="stable")      # lightest first
        phy2log[row, gpus, k] = expert[row, items]
        gpu_load[row, gpus] += share[row, items]
    return phy2log.reshape(layers, replicas)


def swap_refine(phy2log: np.ndarray, counts: np.ndarray, load: np.ndarray, num_gpus: int,
                rounds: int) -> np.ndarray:
    """Swap a replica of the heaviest GPU with one of the PARTNERS lightest GPUs when that
    lowers both below the current maximum; the best such swap per layer and round, on
    the layers that still improve."""
    phy2log = phy2log.copy()
    layers, replicas = phy2log.shape
    per_gpu = replicas // num_gpus
    per_replica = load / counts
    active = np.arange(layers)
    for _ in range(rounds):
        if not len(active):
            break
        share = np.take_along_axis(per_replica[active], phy2log[active], axis=1).reshape(
            len(active), num_gpus, per_gpu)
        gpu_load = share.sum(axis=2)
        row = np.arange(len(active))
        top = gpu_load.argmax(axis=1)
        peak = gpu_load[row, top]
        partner = np.argsort(gpu_load, axis=1, kind="stable")[:, :PARTNERS]  # [A, P]
        theirs = share[row[:, None], partner]                                # [A, P, S]
        delta = share[row, top][:, :, None, None] - theirs[:, None, :, :]    # [A, S, P, S]
        worst = np.maximum(peak[:, None, None, None] - delta,
                           np.take_along_axis(gpu_load, partner, 1)[:, None, :, None] + delta)
        worst = np.where((partner == top[:, None])[:, None, :, None], np.inf, worst)
        flat = worst.reshape(len(active), -1)
        best = flat.argmin(axis=1)
        better = flat[row, best] < peak * (1 - 1e-12)
        a, p, b = np.unravel_index(best[better], worst.shape[1:])
        rows = active[better]
        first = top[better] * per_gpu + a
        second = partner[better, p] * per_gpu + b
        phy2log[rows, first], phy2log[rows, second] = (phy2log[rows, second],
                                                       phy2log[rows, first])
        active = rows
    return phy2log


def log2phy_of(phy2log: np.ndarray, experts: int) -> tuple[np.ndarray, np.ndarray]:
    """(log2phy [L, E, K] padded with -1, logcnt [L, E]) of a placement."""
    layers, replicas = phy2log.shape
    counts = np.stack([np.bincount(row, minlength=experts) for row in phy2log])
    order = np.argsort(phy2log, axis=1, kind="stable")
    first = np.cumsum(counts, axis=1) - counts
    sorted_expert = np.take_along_axis(phy2log, order, axis=1)
    rank = np.arange(replicas)[None, :] - np.take_along_axis(first, sorted_expert, axis=1)
    log2phy = np.full((layers, experts, int(counts.max())), -1, dtype=np.int64)
    log2phy[np.arange(layers)[:, None], sorted_expert, rank] = order
    return log2phy, counts


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int):
    """Water-filled replica counts, LPT packing and swaps; returns (phy2log, log2phy,
    logcnt) as int64 tensors."""
    load = weight.double().cpu().numpy()
    counts = water_fill(load, num_replicas)
    phy2log = lpt_pack(counts, load, num_gpus)
    phy2log = swap_refine(phy2log, counts, load, num_gpus, SWAP_ROUNDS)
    log2phy, logcnt = log2phy_of(phy2log, load.shape[1])
    return torch.from_numpy(phy2log), torch.from_numpy(log2phy), torch.from_numpy(logcnt)


# EVOLVE-BLOCK-END
