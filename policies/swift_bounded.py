"""Reference policy (rival), in the manner of SwiftBalancer (vLLM-Ascend): at most
MAX_MOVES expert moves per rebalance, chosen for the largest gain.

    rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, previous=None)

Without `previous` (the first placement: nothing to migrate from) it places like
policies/waterfill_lpt.py. With it, it starts from the deployed phy2log and, in rounds,
finds for every layer the best of two edits on the layer's heaviest GPU:
  - replicate (1 move): a slot of an expert that has another replica elsewhere is given
    to the expert with the largest load per replica on the heaviest GPU;
  - swap (2 moves): a replica of the heaviest GPU trades slots with one of another GPU;
its gain is how much the layer's heaviest GPU load drops (exactly, on `weight`). Each
round applies the edits with the largest gain per move, at most one per layer, while
the budget of MAX_MOVES slots lasts and some gain is positive. A move is a slot whose
expert changes, so the result differs from `previous` in at most MAX_MOVES slots
(summed over layers).

K = MAX_MOVES is this module-level constant (the candidate interface has no options);
change it here. Written from the published description of SwiftBalancer's idea, not
from its code; topology-blind; self-contained (torch and numpy only).
"""

import numpy as np
import torch

MAX_MOVES = 512      # K: slots that may change expert per rebalance, over all layers
SWAP_ROUNDS = 16
BISECTIONS = 48
PARTNERS = 8        # a swap pairs the heaviest GPU with one of the 8 lightest

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


def best_edits(phy2log: np.ndarray, load: np.ndarray, num_gpus: int):
    """Per layer, the best replicate and the best swap on the heaviest GPU:
    (replicate gain [L], (donor slot, expert) [L], swap gain [L], (slot, slot) [L])."""
    layers, replicas = phy2log.shape
    experts = load.shape[1]
    per_gpu = replicas // num_gpus
    row = np.arange(layers)
    cell = row[:, None] * experts + phy2log
    counts = np.bincount(cell.ravel(), minlength=layers * experts).reshape(layers, experts)
    per_replica = load / np.maximum(counts, 1)
    share = np.take_along_axis(per_replica, phy2log, axis=1).reshape(layers, num_gpus, per_gpu)
    gpu_load = share.sum(axis=2)
    top = gpu_load.argmax(axis=1)
    peak = gpu_load[row, top]
    # swap: only the two GPUs change; the others bound the layer's new maximum
    rest = gpu_load.copy()
    rest[row, top] = -np.inf
    second = rest.argmax(axis=1)
    second_load = np.maximum(rest[row, second], 0)
    rest[row, second] = -np.inf
    third_load = np.maximum(rest.max(axis=1), 0)
    others = np.where(np.arange(num_gpus)[None, :] == second[:, None], third_load[:, None],
                      second_load[:, None])
    partner = np.argsort(gpu_load, axis=1, kind="stable")[:, :PARTNERS]    # [L, P]
    theirs = share[row[:, None], partner]                                   # [L, P, S]
    delta = share[row, top][:, :, None, None] - theirs[:, None, :, :]       # [L, S, P, S]
    worst = np.maximum(np.maximum(peak[:, None, None, None] - delta,
                                  np.take_along_axis(gpu_load, partner, 1)[:, None, :, None]
                                  + delta),
                       np.take_along_axis(others, partner, 1)[:, None, :, None])
    worst = np.where((partner == top[:, None])[:, None, :, None], np.inf, worst)
    flat = worst.reshape(layers, -1)
    pick = flat.argmin(axis=1)
    swap_gain = peak - flat[row, pick]
    a, p, b = np.unravel_index(pick, worst.shape[1:])
    swap = (top * per_gpu + a, partner[row, p] * per_gpu + b)
    # replicate: the expert with the most load per replica on the heaviest GPU takes the
    # slot of an expert with another replica; new GPU loads for every donor slot
    on_top = phy2log.reshape(layers, num_gpus, per_gpu)[row, top]
    hot = on_top[row, share[row, top].argmax(axis=1)]
    gpu_of = np.arange(replicas) // per_gpu
    held = np.bincount((cell * num_gpus + gpu_of).ravel(), minlength=layers * experts
                       * num_gpus).reshape(layers, experts, num_gpus)
    w_e, c_e = load[row, hot], counts[row, hot]
    change_e = held[row, hot] * (w_e / (c_e + 1) - w_e / c_e)[:, None]      # [L, G]
    c_f = np.take_along_axis(counts, phy2log, axis=1)                      # [L, R]
    usable = (c_f > 1) & (phy2log != hot[:, None])
    width = max(int(usable.sum(axis=1).max()), 1)
    donor = np.argsort(~usable, axis=1, kind="stable")[:, :width]          # usable first
    usable = np.take_along_axis(usable, donor, axis=1)
    f = np.take_along_axis(phy2log, donor, axis=1)                          # [L, D]
    w_f, c_f = np.take_along_axis(load, f, axis=1), np.take_along_axis(counts, f, axis=1)
    n_f = np.take_along_axis(held, f[:, :, None], axis=1)                   # [L, D, G]
    at_slot = gpu_of[donor][:, :, None] == np.arange(num_gpus)              # [L, D, G]
    after_f = np.divide(w_f, c_f - 1, out=np.zeros_like(w_f), where=c_f > 1)
    new = (gpu_load[:, None, :] + change_e[:, None, :]
           + (n_f - at_slot) * after_f[:, :, None] - n_f * (w_f / c_f)[:, :, None]
           + at_slot * (w_e / (c_e + 1))[:, None, None])
    worst_rep = np.where(usable, new.max(axis=2), np.inf)
    pick_rep = worst_rep.argmin(axis=1)
    slot = donor[row, pick_rep]
    rep_gain = peak - worst_rep[row, pick_rep]
    return rep_gain, (slot, hot), swap_gain, swap


def bounded_moves(old: np.ndarray, load: np.ndarray, num_gpus: int, budget: int) -> np.ndarray:
    """`old` improved by the edits with the largest gain per move, at most `budget` moves."""
    phy2log = old.copy()
    while budget > 0:
        rep_gain, (slot, hot), swap_gain, (first, second) = best_edits(phy2log, load, num_gpus)
        use_swap = swap_gain / 2 > rep_gain
        per_move = np.where(use_swap, swap_gain / 2, rep_gain)
        cost = np.where(use_swap, 2, 1)
        order = np.argsort(-per_move, kind="stable")
        order = order[per_move[order] > 1e-12 * load.sum(axis=1)[order]]
        order = order[np.cumsum(cost[order]) <= budget]
        if not len(order):
            break
        budget -= int(cost[order].sum())
        swaps, reps = order[use_swap[order]], order[~use_swap[order]]
        phy2log[swaps, first[swaps]], phy2log[swaps, second[swaps]] = (
            phy2log[swaps, second[swaps]], phy2log[swaps, first[swaps]])
        phy2log[reps, slot[reps]] = hot[reps]
    return phy2log


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int, previous=None):
    """The deployed placement improved with at most MAX_MOVES moves (a fresh one at
    first); returns (phy2log, log2phy, logcnt) as int64 tensors."""
    load = weight.double().cpu().numpy()
    if previous is None:
        counts = water_fill(load, num_replicas)
        phy2log = swap_refine(lpt_pack(counts, load, num_gpus), counts, load, num_gpus,
                              SWAP_ROUNDS)
    else:
        phy2log = bounded_moves(previous.cpu().numpy().astype(np.int64), load, num_gpus,
                                MAX_MOVES)
    log2phy, logcnt = log2phy_of(phy2log, load.shape[1])
    return torch.from_numpy(phy2log), torch.from_numpy(log2phy), torch.from_numpy(logcnt)


# EVOLVE-BLOCK-END
