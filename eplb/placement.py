"""Check a placement and simulate the load it puts on slots, GPUs and nodes.

A placement for L layers, E logical experts and R physical slots is
(phy2log[L, R], log2phy[L, E, K], logcnt[L, E]). Slot s of a layer lives on
GPU s // (R / num_gpus); GPU g on node g // (num_gpus / num_nodes). Every
expert's load is split evenly over its replicas (vLLM's definition for EP ranks).
All checks and loads are vectorised over layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scenario:
    """One hardware setting the candidate is asked to place for."""

    name: str
    num_replicas: int
    num_groups: int
    num_nodes: int
    num_gpus: int

    def problems(self, experts: int) -> list[str]:
        """What makes this scenario impossible for `experts` logical experts."""
        found = []
        if self.num_replicas % self.num_gpus:
            found.append(f"num_replicas {self.num_replicas} is not divisible by "
                         f"num_gpus {self.num_gpus}")
        if self.num_gpus % self.num_nodes:
            found.append(f"num_gpus {self.num_gpus} is not divisible by num_nodes "
                         f"{self.num_nodes}")
        if self.num_replicas < experts:
            found.append(f"num_replicas {self.num_replicas} < {experts} experts")
        if experts % self.num_groups:
            found.append(f"{experts} experts do not split into {self.num_groups} groups")
        return [f"scenario {self.name}: {text}" for text in found]


@dataclass(frozen=True)
class Violation:
    """A broken rule, where it first happens, and how often."""

    rule: str
    message: str
    layer: int | None = None
    index: int | None = None
    count: int = 1

    def __str__(self) -> str:
        where = "" if self.layer is None else f" (layer {self.layer}, index {self.index})"
        extra = f" [{self.count} places]" if self.count > 1 else ""
        return f"[{self.rule}] {self.message}{where}{extra}"


def _first(mask: np.ndarray, rule: str, message: str) -> list[Violation]:
    if not mask.any():
        return []
    places = np.argwhere(mask)
    first = places[0]
    index = int(first[1]) if len(first) == 2 else tuple(int(i) for i in first[1:])
    return [Violation(rule, message, int(first[0]), index, len(places))]


def validate(phy2log, log2phy, logcnt, layers: int, experts: int,
             scenario: Scenario) -> list[Violation]:
    """Every rule the placement breaks; an empty list means it is valid."""
    found = [Violation("scenario", text) for text in scenario.problems(experts)]
    replicas = scenario.num_replicas
    expected = {"phy2log": (layers, replicas), "log2phy": (layers, experts, None),
                "logcnt": (layers, experts)}
    arrays = {"phy2log": np.asarray(phy2log), "log2phy": np.asarray(log2phy),
              "logcnt": np.asarray(logcnt)}
    for name, array in arrays.items():
        want = expected[name]
        if array.ndim != len(want) or any(w is not None and w != a
                                          for w, a in zip(want, array.shape, strict=False)):
            shown = tuple("K" if w is None else w for w in want)
            found.append(Violation("shape", f"{name} has shape {tuple(array.shape)}, "
                                            f"expected {shown}"))
        elif array.dtype.kind not in "iu":
            found.append(Violation("dtype", f"{name} has dtype {array.dtype}, expected an "
                                            "integer dtype (int64)"))
            if array.dtype.kind in "fc" and np.isnan(array).any():
                found += _first(np.isnan(array).reshape(layers, -1), "nan",
                                f"{name} contains NaN")
    if found:
        return found
    # checked in their own integer dtype (the runner sends the narrowest that holds the
    # values); only uint64 is widened, since its sums with int64 would be floats
    phy2log, log2phy, logcnt = (arrays[k].astype(np.int64) if arrays[k].dtype == np.uint64
                                else arrays[k] for k in ("phy2log", "log2phy", "logcnt"))
    out_of_range = (phy2log < 0) | (phy2log >= experts)
    found += _first(out_of_range, "phy2log-range",
                    f"phy2log holds an expert id outside [0, {experts})")
    if found:
        return found
    counts = replica_counts(phy2log, experts)
    found += _first(counts == 0, "coverage", "an expert has no replica")
    found += _first(logcnt != counts, "logcnt",
                    "logcnt differs from the number of slots phy2log gives the expert")
    found += _check_log2phy(phy2log, log2phy, counts)
    return found


def _log2phy_is_valid(phy2log, log2phy, counts) -> bool:
    """Whether log2phy breaks none of the rules `_locate_log2phy` checks, touching the
    used entries only (the common case, a valid placement, is fast); exactly as strict
    (tested). log2phy must be wide enough for counts.

    The used entries of row (layer, expert) are its first counts[layer, expert] ones:
    each a slot in [0, R) that phy2log gives to that expert; every other entry is -1;
    and since a layer's counts add up to R, no slot listed twice = every slot listed."""
    layers, experts, width = log2phy.shape
    replicas = phy2log.shape[1]
    flat, per_row = log2phy.ravel(), counts.ravel()
    # the used entries, in (layer, expert) order: row starts, less where rows start in it
    shift = np.arange(0, len(per_row) * width, width) - (np.cumsum(per_row) - per_row)
    slots = flat[np.arange(layers * replicas) + np.repeat(shift, per_row)]
    if np.count_nonzero(flat == -1) != flat.size - len(slots) or slots.min() < 0 \
            or slots.max() >= replicas:
        return False
    slots = slots + np.repeat(np.arange(0, layers * replicas, replicas), replicas)
    owner = phy2log.ravel()[slots] + np.repeat(np.arange(0, layers * experts, experts),
                                               replicas)
    # owner (layer, expert) of each used entry: right everywhere iff, like the entries,
    # it never decreases and each row owns as many as it uses
    if (owner[1:] < owner[:-1]).any() or not np.array_equal(
            np.bincount(owner, minlength=len(per_row)), per_row):
        return False
    listed = np.zeros(layers * replicas, dtype=bool)
    listed[slots] = True
    return bool(listed.all())


def _check_log2phy(phy2log, log2phy, counts) -> list[Violation]:
    """Check log2phy on its used entries only; locate a problem only when there is one."""
    width = log2phy.shape[2]
    if width < counts.max():
        return [Violation("log2phy", f"log2phy has {width} columns but an expert has "
                                     f"{int(counts.max())} replicas")]
    if _log2phy_is_valid(phy2log, log2phy, counts):
        return []
    return _locate_log2phy(phy2log, log2phy, counts)


def _locate_log2phy(phy2log, log2phy, counts) -> list[Violation]:
    """Every log2phy rule broken, each at its first place (log2phy is wide enough)."""
    layers, experts, width = log2phy.shape
    replicas = phy2log.shape[1]
    used = np.arange(width)[None, None, :] < counts[:, :, None]
    slots = log2phy[used]
    layer = np.repeat(np.arange(layers), counts.sum(axis=1))
    expert = np.repeat(np.tile(np.arange(experts), layers), counts.ravel())
    found = []
    in_range = (slots >= 0) & (slots < replicas)
    all_in_range = bool(in_range.all())
    padding = used.size - slots.size  # entries that must be -1
    if not all_in_range or np.count_nonzero(log2phy == -1) != padding:
        found += _first((~used & (log2phy != -1)).any(axis=2), "log2phy-padding",
                        "log2phy entries past the expert's replica count must be -1")
    if not all_in_range:
        found += _located(layer, expert, ~in_range, layers, experts, "log2phy-range",
                          f"log2phy holds a slot outside [0, {replicas})")
        slots = np.where(in_range, slots, 0)
    flat = layer * replicas + slots
    wrong_owner = phy2log.ravel()[flat] != expert
    if not all_in_range:
        wrong_owner &= in_range
    if wrong_owner.any():
        found += _located(layer, expert, wrong_owner, layers, experts, "log2phy-mapping",
                          "log2phy points at a slot that phy2log gives to another expert")
        flat = flat[in_range & ~wrong_owner]  # a wrong owner is not also a duplicate
    elif not all_in_range:
        flat = flat[in_range]
    twice = np.flatnonzero(np.bincount(flat, minlength=layers * replicas) > 1)
    if len(twice):
        slot_layer, slot = divmod(int(twice[0]), replicas)
        found.append(Violation("log2phy-distinct", "log2phy lists the same slot twice for one "
                               "expert", slot_layer, int(phy2log[slot_layer, slot]), len(twice)))
    return found


def _located(layer, expert, bad, layers, experts, rule, message) -> list[Violation]:
    """A violation at the first (layer, expert) whose used entries are flagged in `bad`."""
    mask = np.zeros((layers, experts), dtype=bool)
    mask[layer[bad], expert[bad]] = True
    return _first(mask, rule, message)


def replica_counts(phy2log: np.ndarray, experts: int) -> np.ndarray:
    """Replicas of each expert per layer, [L, E], from phy2log."""
    layers = phy2log.shape[0]
    flat = phy2log + (np.arange(layers) * experts)[:, None]
    return np.bincount(flat.ravel(), minlength=layers * experts).reshape(layers, experts)


def slot_loads(load: np.ndarray, phy2log: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Load of every slot, [L, R]: each expert's load split evenly over its replicas."""
    per_replica = load / np.maximum(counts, 1)
    return np.take_along_axis(per_replica, phy2log, axis=1)


def group_sum(units: np.ndarray, groups: int) -> np.ndarray:
    """Sum consecutive runs of units into `groups` bins per layer (slots->GPUs, GPUs->nodes)."""
    return units.reshape(units.shape[0], groups, -1).sum(axis=2)


def balancedness(units: np.ndarray) -> float:
    """Sum over layers of the mean unit load / sum over layers of the max (1.0 = perfect)."""
    worst = units.max(axis=1).sum()
    return float(units.mean(axis=1).sum() / worst) if worst > 0 else 1.0


@dataclass(frozen=True)
class Balance:
    """Balancedness of one placement on one window at three levels."""

    gpu: float
    slot: float
    node: float


def measure(load: np.ndarray, phy2log: np.ndarray, counts: np.ndarray,
            scenario: Scenario) -> Balance:
    """Balancedness of a placement (with its replica counts) on a window's load [L, E]."""
    return measure_windows(load[None], phy2log, counts, scenario)[0]


def measure_windows(loads: np.ndarray, phy2log: np.ndarray, counts: np.ndarray,
                    scenario: Scenario) -> list[Balance]:
    """Balancedness of one placement on each of several windows' loads [N, L, E]."""
    windows, layers, experts = loads.shape
    per_replica = (loads / np.maximum(counts, 1)).reshape(windows, layers * experts)
    flat = (phy2log + (np.arange(layers) * experts)[:, None]).ravel()
    slots = per_replica[:, flat].reshape(windows * layers, -1)  # slot_loads, gathered once
    gpus = group_sum(slots, scenario.num_gpus)
    nodes = group_sum(gpus, scenario.num_nodes)
    return [Balance(gpu=balancedness(gpus[k * layers:(k + 1) * layers]),
                    slot=balancedness(slots[k * layers:(k + 1) * layers]),
                    node=balancedness(nodes[k * layers:(k + 1) * layers]))
            for k in range(windows)]


def _experts_per_gpu(loads: np.ndarray, num_gpus: int) -> np.ndarray:
    """GPU loads [..., G] when every expert sits once, in order, on the GPUs."""
    experts = loads.shape[-1]
    gpu_of_expert = np.arange(experts) * num_gpus // experts
    return np.stack([loads[..., gpu_of_expert == g].sum(axis=-1) for g in range(num_gpus)],
                    axis=-1)


def no_replication_balance(load: np.ndarray, scenario: Scenario) -> Balance:
    """Reference: every expert once, experts laid out in order over the GPUs, no replicas.

    Used only as a reference point; it leaves R - E slots empty.
    """
    gpus = _experts_per_gpu(load, scenario.num_gpus)
    nodes = group_sum(gpus, scenario.num_nodes)
    return Balance(gpu=balancedness(gpus), slot=balancedness(load), node=balancedness(nodes))


def no_replication_gpu(loads: np.ndarray, scenario: Scenario) -> np.ndarray:
    """`no_replication_balance(...).gpu` for each window of loads [N, L, E], at once."""
    gpus = _experts_per_gpu(loads, scenario.num_gpus)
    worst = gpus.max(axis=2).sum(axis=1)
    mean = gpus.mean(axis=2).sum(axis=1)
    return np.divide(mean, worst, out=np.ones_like(mean), where=worst > 0)


def migration(previous: np.ndarray | None, current: np.ndarray) -> int:
    """Slots whose expert changed between two placements (0 for the first one)."""
    return 0 if previous is None else int((previous != current).sum())


def nodes_per_group(phy2log: np.ndarray, experts: int, scenario: Scenario) -> np.ndarray:
    """Distinct nodes hosting a replica of each group's experts, [L, groups] (locality)."""
    layers, replicas = phy2log.shape
    groups, nodes = scenario.num_groups, scenario.num_nodes
    node = np.arange(replicas) // (replicas // nodes)
    cell = ((np.arange(layers)[:, None] * groups + phy2log // (experts // groups)) * nodes
            + node)
    present = np.zeros(layers * groups * nodes, dtype=bool)
    present[cell.ravel()] = True
    return present.reshape(layers, groups, nodes).sum(axis=2)
