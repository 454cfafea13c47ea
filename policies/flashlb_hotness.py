"""Reference policy (rival), in the manner of FlashLB (vLLM-Ascend): multi-window hotness,
then an incremental adjustment that keeps experts where they are when balance allows.

    rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus,
                      history=None, previous=None)

1. Hotness: a decayed mean of the newest WINDOWS windows (weight and the end of
   `history`), each older window counting DECAY times less, so that one noisy window
   neither adds nor removes replicas on its own.
2. Replica counts by water-filling on the hotness (the min-max per-replica load, exact),
   packing by longest processing time and pairwise swaps (as policies/waterfill_lpt.py).
3. With `previous` (the deployed phy2log), per layer, the first of these whose heaviest GPU
   (on the hotness) is within KEEP_TOLERANCE of step 2's:
   - the deployed placement itself (nothing moves);
   - the deployed placement with step 2's replica counts: every deployed replica still
     needed stays in its slot, the others go, heaviest first, to the free slot of the
     lightest GPU that has one; then swaps repair the balance;
   - step 2's placement with its GPUs renumbered to overlap the deployed ones most
     (greedy matching; GPU loads do not depend on the numbering), and an expert that a
     GPU already held kept in its slot there.

Written from the published description of FlashLB's ideas, not from its code; topology-
blind; self-contained (torch and numpy only).
"""

import numpy as np
import torch

WINDOWS = 4            # windows in the hotness: weight and up to 3 from history
DECAY = 0.5            # weight of a window relative to the next newer one
KEEP_TOLERANCE = 0.01  # keep a layer if its deployed max GPU load is within 1% of the new
SWAP_ROUNDS = 16
STICKY_SWAP_ROUNDS = 32  # swaps that repair the sticky packing's balance
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


def hotness(weight: np.ndarray, history) -> np.ndarray:
    """Decayed mean [L, E] of the newest WINDOWS windows, weight the newest."""
    windows = [weight]
    if history is not None and len(history):
        past = history.double().cpu().numpy()
        if past.shape[1:] != weight.shape:
            raise ValueError(f"history has shape {tuple(past.shape)}, expected "
                             f"(H, {weight.shape[0]}, {weight.shape[1]})")
        windows += list(past[::-1][:WINDOWS - 1])
    factors = DECAY ** np.arange(len(windows))
    return np.tensordot(factors / factors.sum(), np.stack(windows), axes=1)


def peak(phy2log: np.ndarray, load: np.ndarray, num_gpus: int) -> np.ndarray:
    """Heaviest GPU load [L] of a placement, each expert's load split over its replicas."""
    layers, replicas = phy2log.shape
    counts = np.stack([np.bincount(row, minlength=load.shape[1]) for row in phy2log])
    share = np.take_along_axis(load / np.maximum(counts, 1), phy2log, axis=1)
    return share.reshape(layers, num_gpus, -1).sum(axis=2).max(axis=1)


def renumber(new: np.ndarray, old: np.ndarray, num_gpus: int, experts: int) -> np.ndarray:
    """`new` with its GPUs renumbered to share the most experts with `old`'s (greedy
    matching on the overlap counts); GPU loads are unchanged."""
    layers, replicas = new.shape
    per_gpu = replicas // num_gpus
    overlap = held(new, num_gpus, experts) @ held(old, num_gpus, experts).transpose(0, 2, 1)
    target = np.empty((layers, num_gpus), dtype=np.int64)
    rows = np.arange(layers)
    for _ in range(num_gpus):
        g, h = np.divmod(overlap.reshape(layers, -1).argmax(axis=1), num_gpus)
        target[rows, g] = h
        overlap[rows, g, :] = -1
        overlap[rows, :, h] = -1
    items = np.empty((layers, num_gpus, per_gpu), dtype=np.int64)
    items[rows[:, None], target] = new.reshape(layers, num_gpus, per_gpu)
    return items.reshape(layers, replicas)


def held(phy2log: np.ndarray, num_gpus: int, experts: int) -> np.ndarray:
    """Replicas of each expert on each GPU, [L, G, E] (float32)."""
    layers, replicas = phy2log.shape
    gpu_of = np.arange(replicas) // (replicas // num_gpus)
    cell = (np.arange(layers)[:, None] * num_gpus + gpu_of) * experts + phy2log
    return np.bincount(cell.ravel(), minlength=layers * num_gpus * experts).reshape(
        layers, num_gpus, experts).astype(np.float32)


def keep_slots(new: np.ndarray, old: np.ndarray, num_gpus: int) -> np.ndarray:
    """`new` with each GPU's slots reordered so that an expert `old` had in a slot of the
    same GPU stays in that slot."""
    layers, replicas = new.shape
    per_gpu = replicas // num_gpus
    items = new.reshape(layers, num_gpus, per_gpu)
    slots = old.reshape(layers, num_gpus, per_gpu)
    result = np.zeros_like(items)
    used = np.zeros(items.shape, dtype=bool)
    kept = np.zeros(items.shape, dtype=bool)
    for j in range(per_gpu):
        match = (items == slots[:, :, j:j + 1]) & ~used
        has = match.any(axis=2)
        used |= (np.arange(per_gpu) == match.argmax(axis=2)[..., None]) & has[..., None]
        kept[:, :, j] = has
        result[:, :, j] = np.where(has, slots[:, :, j], 0)
    free = np.argsort(kept, axis=2, kind="stable")            # slots to fill first
    rest = np.take_along_axis(items, np.argsort(used, axis=2, kind="stable"), axis=2)
    fill = np.arange(per_gpu) < (~kept).sum(axis=2, keepdims=True)
    values = np.where(fill, rest, np.take_along_axis(result, free, axis=2))
    np.put_along_axis(result, free, values, axis=2)
    return result.reshape(layers, replicas)


def keep_and_fill(counts: np.ndarray, load: np.ndarray, old: np.ndarray,
                  num_gpus: int) -> np.ndarray:
    """phy2log [L, R] that keeps every deployed replica the new counts still need in its
    slot and puts the other replicas, heaviest first, in the free slot of the lightest GPU
    that has one."""
    layers, replicas = old.shape
    per_gpu = replicas // num_gpus
    row = np.arange(layers)[:, None]
    order = np.argsort(old, axis=1, kind="stable")
    ranked = np.take_along_axis(old, order, axis=1)
    old_counts = np.stack([np.bincount(r, minlength=counts.shape[1]) for r in old])
    first = np.cumsum(old_counts, axis=1) - old_counts
    rank = np.empty_like(old)
    rank[row, order] = np.arange(replicas) - np.take_along_axis(first, ranked, axis=1)
    kept = rank < np.take_along_axis(counts, old, axis=1)
    missing = counts - np.minimum(counts, old_counts)
    expert = [np.repeat(np.arange(counts.shape[1]), m) for m in missing]
    width = max(len(e) for e in expert)
    todo = np.full((layers, width), -1, dtype=np.int64)
    for i, e in enumerate(expert):
        todo[i, :len(e)] = e
    share = np.where(todo >= 0, np.take_along_axis(load / counts, np.maximum(todo, 0), 1), -1)
    by_size = np.argsort(-share, axis=1, kind="stable")
    todo, share = (np.take_along_axis(a, by_size, axis=1) for a in (todo, share))
    phy2log = np.where(kept, old, -1)
    gpu_load = np.where(kept, np.take_along_axis(load / counts, old, axis=1), 0.0).reshape(
        layers, num_gpus, per_gpu).sum(axis=2)
    free = (~kept).reshape(layers, num_gpus, per_gpu).sum(axis=2)
    rows = np.arange(layers)
    for k in range(width):
        live = todo[:, k] >= 0
        gpu = np.where(free > 0, gpu_load, np.inf).argmin(axis=1)
        slot = gpu * per_gpu + (phy2log.reshape(layers, num_gpus, per_gpu)[rows, gpu] < 0
                                ).argmax(axis=1)
        phy2log[rows[live], slot[live]] = todo[live, k]
        gpu_load[rows[live], gpu[live]] += share[live, k]
        free[rows[live], gpu[live]] -= 1
    return phy2log


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int, history=None, previous=None):
    """Placement from the multi-window hotness, kept or aligned to `previous`; returns
    (phy2log, log2phy, logcnt) as int64 tensors."""
    hot = hotness(weight.double().cpu().numpy(), history)
    counts = water_fill(hot, num_replicas)
    phy2log = lpt_pack(counts, hot, num_gpus)
    phy2log = swap_refine(phy2log, counts, hot, num_gpus, SWAP_ROUNDS)
    if previous is not None:
        old = previous.cpu().numpy().astype(np.int64)
        experts = hot.shape[1]
        fresh = peak(phy2log, hot, num_gpus)
        sticky = keep_and_fill(counts, hot, old, num_gpus)
        sticky = swap_refine(sticky, counts, hot, num_gpus, STICKY_SWAP_ROUNDS)
        bound = (1 + KEEP_TOLERANCE) * fresh
        good = peak(sticky, hot, num_gpus) <= bound
        if not good.all():
            aligned = keep_slots(renumber(phy2log, old, num_gpus, experts), old, num_gpus)
            sticky = np.where(good[:, None], sticky, aligned)
        phy2log = sticky
        phy2log = np.where((peak(old, hot, num_gpus) <= bound)[:, None], old, phy2log)
    log2phy, logcnt = log2phy_of(phy2log, hot.shape[1])
    return torch.from_numpy(phy2log), torch.from_numpy(log2phy), torch.from_numpy(logcnt)


# EVOLVE-BLOCK-END
