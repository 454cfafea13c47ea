"""Selection strategies: parents, inspirations, migration and island resets.

Everything here is pure and deterministic given a `random.Random`: inputs are put in
a canonical order (`records.best_first`) before drawing,
so the same seed gives the same choice whatever order the caller listed them in.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Callable, Iterable

from evolve.records import Program, best_first


def _ranked(programs: Iterable[Program]) -> list[Program]:
    """Valid programs best first (`records.best_first`); an error when there are none."""
    ranked = best_first(programs)
    if not ranked:
        raise ValueError("no valid program to select from")
    return ranked


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class PowerLawRank:
    """Pick by rank: P(rank r) is proportional to r**-alpha (rank 1 = best)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def select(
        self, programs: list[Program], rng: random.Random, children: dict | None = None
    ) -> Program:
        """Draw one parent; `children` is accepted for a uniform interface and ignored."""
        ranked = _ranked(programs)
        weights = [(r + 1) ** -self.alpha for r in range(len(ranked))]
        return rng.choices(ranked, weights=weights)[0]


class WeightedSigmoid:
    """Weight = sigmoid(sharpness * (score - median)) / (1 + number of children)."""

    def __init__(self, sharpness: float = 10.0):
        self.sharpness = sharpness

    def select(
        self,
        programs: list[Program],
        rng: random.Random,
        children: dict[str, int] | None = None,
    ) -> Program:
        """Draw one parent; children counts come from `children` or from the list's parent_ids."""
        ranked = _ranked(programs)
        if children is None:
            children = Counter(p.parent_id for p in programs if p.parent_id)
        median = statistics.median(p.score for p in ranked)
        weights = [
            _sigmoid(self.sharpness * (p.score - median)) / (1 + children.get(p.id, 0))
            for p in ranked
        ]
        return rng.choices(ranked, weights=weights)[0]


class Tournament:
    """Draw `size` distinct programs uniformly; the best of them wins."""

    def __init__(self, size: int = 3):
        if size < 1:
            raise ValueError("tournament size must be >= 1")
        self.size = size

    def select(
        self, programs: list[Program], rng: random.Random, children: dict | None = None
    ) -> Program:
        """Draw one parent; `children` is accepted for a uniform interface and ignored."""
        ranked = _ranked(programs)
        picked = rng.sample(range(len(ranked)), min(self.size, len(ranked)))
        return ranked[min(picked)]


PARENT_SELECTORS = {
    "power_law": PowerLawRank,
    "weighted_sigmoid": WeightedSigmoid,
    "tournament": Tournament,
}


def make_parent_selector(kind: str, **options) -> PowerLawRank | WeightedSigmoid | Tournament:
    """Build a parent selector by name: power_law, weighted_sigmoid or tournament."""
    if kind not in PARENT_SELECTORS:
        raise ValueError(f"unknown parent selector {kind!r}; valid kinds: "
                         f"{sorted(PARENT_SELECTORS)}")
    return PARENT_SELECTORS[kind](**options)


def pick_inspirations(
    island_top: list[Program],
    archive_top: list[Program],
    n_island: int,
    n_archive: int,
    exclude_ids: set[str],
    rng: random.Random,
    exclude_hashes: Iterable[str] = (),
) -> list[Program]:
    """The island's best first, then random picks from the archive; no duplicate id or code."""
    seen_ids = set(exclude_ids)
    seen_hashes = {h for h in exclude_hashes if h}

    def fresh(p: Program) -> bool:
        return p.id not in seen_ids and not (p.code_hash and p.code_hash in seen_hashes)

    def take(p: Program) -> None:
        seen_ids.add(p.id)
        if p.code_hash:
            seen_hashes.add(p.code_hash)

    chosen: list[Program] = []
    for p in _ranked(island_top) if island_top else []:
        if len(chosen) >= n_island:
            break
        if fresh(p):
            take(p)
            chosen.append(p)

    pool = _ranked(archive_top) if archive_top else []
    rng.shuffle(pool)
    picked = 0
    for p in pool:
        if picked >= n_archive:
            break
        if fresh(p):
            take(p)
            chosen.append(p)
            picked += 1
    return chosen


def migration_plan(
    island_bests: dict[int, Program | None],
    num_islands: int,
    holds: Callable[[int, str], bool],
) -> list[tuple[Program, int]]:
    """Ring migration: island i's best goes to (i + 1) % num_islands unless already held there."""
    if num_islands < 2:
        return []
    plan = []
    for island in range(num_islands):
        best = island_bests.get(island)
        target = (island + 1) % num_islands
        if best is None or holds(target, best.code_hash):
            continue
        plan.append((best, target))
    return plan


def stagnant_islands(history: dict[int, list[float]], patience: int) -> list[int]:
    """Islands whose best score did not improve over the last `patience` recorded points."""
    if patience < 1:
        raise ValueError("patience must be >= 1")
    stuck = []
    for island, points in sorted(history.items()):
        if len(points) <= patience:
            continue
        if max(points[-patience:]) <= max(points[:-patience]):
            stuck.append(island)
    return stuck


def reset_plan(stagnant: list[int], survivors: list[Program]) -> list[tuple[Program, int]]:
    """Re-seed each stagnant island with the best valid survivor from another island."""
    ranked = best_first(survivors)
    plan = []
    for island in stagnant:
        donor = next((p for p in ranked if p.island != island), None)
        if donor is not None:
            plan.append((donor, island))
    return plan
