"""Tests for parent selection, inspirations, migration and island resets."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from evolve.records import Program
from evolve.selection import (
    PowerLawRank,
    Tournament,
    WeightedSigmoid,
    make_parent_selector,
    migration_plan,
    pick_inspirations,
    reset_plan,
    stagnant_islands,
)


def prog(pid: str, score: float | None, island: int = 0, generation: int = 1, **kw) -> Program:
    return Program(
        id=pid,
        code=f"# {pid}",
        generation=generation,
        island=island,
        score=score,
        valid=score is not None,
        code_hash=kw.pop("code_hash", f"h-{pid}"),
        **kw,
    )


POOL = [prog(f"p{i}", score=i / 10) for i in range(10)]  # p9 is the best


def draw(selector, programs, n=20_000, seed=0, **kw) -> Counter:
    rng = random.Random(seed)
    return Counter(selector.select(programs, rng, **kw).id for _ in range(n))


def test_power_law_matches_expected_frequencies():
    n = 20_000
    counts = draw(PowerLawRank(alpha=1.0), POOL, n)
    norm = sum(1 / r for r in range(1, 11))
    assert counts["p9"] / n == pytest.approx(1 / norm, abs=0.02)  # rank 1 ~ 34 %
    assert counts["p8"] / n == pytest.approx(0.5 / norm, abs=0.02)  # rank 2 ~ 17 %
    assert counts["p0"] / n == pytest.approx(0.1 / norm, abs=0.01)  # rank 10 ~ 3.4 %
    assert counts.most_common(1)[0][0] == "p9"


def test_power_law_alpha_zero_is_uniform():
    counts = draw(PowerLawRank(alpha=0.0), POOL, 20_000)
    assert all(c / 20_000 == pytest.approx(0.1, abs=0.015) for c in counts.values())


def test_tournament_size_one_is_uniform_and_big_tournament_picks_best():
    counts = draw(Tournament(size=1), POOL, 20_000)
    assert len(counts) == 10
    assert all(c / 20_000 == pytest.approx(0.1, abs=0.015) for c in counts.values())
    assert draw(Tournament(size=50), POOL, 200) == Counter({"p9": 200})
    # size 3 of 10: P(best) = 1 - C(9,3)/C(10,3) = 0.3
    assert draw(Tournament(size=3), POOL, 20_000)["p9"] / 20_000 == pytest.approx(0.3, abs=0.02)


def test_weighted_sigmoid_prefers_good_and_childless():
    pool = [prog("lo", 0.2), prog("mid", 0.5), prog("hi", 0.8)]
    counts = draw(WeightedSigmoid(sharpness=10.0), pool, 10_000)
    assert counts["hi"] > counts["mid"] > counts["lo"]
    # Many children shrink the weight of "hi" below "mid": 0.95/21 < 0.5
    busy = draw(WeightedSigmoid(), pool, 10_000, children={"hi": 20})
    assert busy["mid"] > busy["hi"]
    # Children counted from the list's own parent_ids when no dict is given.
    kids = [prog(f"k{i}", None, parent_id="hi") for i in range(20)]
    from_list = draw(WeightedSigmoid(), pool + kids, 10_000)
    assert from_list == busy
    assert set(from_list) <= {"lo", "mid", "hi"}  # invalid programs are never picked


@pytest.mark.parametrize("kind", ["power_law", "weighted_sigmoid", "tournament"])
def test_selectors_are_deterministic_and_order_independent(kind):
    selector = make_parent_selector(kind)
    shuffled = POOL[:]
    random.Random(5).shuffle(shuffled)
    assert draw(selector, POOL, 500, seed=3) == draw(selector, shuffled, 500, seed=3)
    picks_a = [selector.select(POOL, random.Random(11)).id for _ in range(5)]
    picks_b = [selector.select(POOL, random.Random(11)).id for _ in range(5)]
    assert picks_a == picks_b


def test_factory_options_and_errors():
    assert make_parent_selector("power_law", alpha=2.0).alpha == 2.0
    assert make_parent_selector("tournament", size=5).size == 5
    assert isinstance(make_parent_selector("weighted_sigmoid"), WeightedSigmoid)
    with pytest.raises(ValueError, match="power_law.*tournament.*weighted_sigmoid"):
        make_parent_selector("roulette")
    for kind in ("power_law", "weighted_sigmoid", "tournament"):
        with pytest.raises(ValueError):
            make_parent_selector(kind).select([], random.Random(0))
        with pytest.raises(ValueError):
            make_parent_selector(kind).select([prog("bad", None)], random.Random(0))


def test_inspirations_island_best_first_then_archive_without_duplicates():
    parent = prog("parent", 0.99)
    island_top = [prog("i1", 0.5), parent, prog("i2", 0.9), prog("i3", 0.7)]
    archive_top = [
        parent,
        prog("i2", 0.9),  # same id as an island pick
        prog("copy", 0.8, code_hash="h-i3"),  # same code as an island pick
        prog("parent-copy", 0.99, code_hash="h-parent"),  # same code as the parent
        prog("a1", 0.6),
        prog("a2", 0.4),
        prog("a3", 0.3),
    ]
    picks = pick_inspirations(
        island_top, archive_top, 2, 2, {"parent"}, random.Random(0), exclude_hashes={"h-parent"}
    )
    ids = [p.id for p in picks]
    assert ids[:2] == ["i2", "i3"]
    assert len(ids) == 4 and set(ids[2:]) <= {"a1", "a2", "a3"}
    assert len({p.code_hash for p in picks}) == 4
    again = pick_inspirations(
        island_top, archive_top, 2, 2, {"parent"}, random.Random(0), exclude_hashes={"h-parent"}
    )
    assert again == picks
    # Asking for more than exists returns what there is, still without duplicates.
    everything = pick_inspirations(island_top, archive_top, 10, 10, {"parent"}, random.Random(1))
    assert sorted(p.id for p in everything) == ["a1", "a2", "a3", "i1", "i2", "i3", "parent-copy"]
    assert pick_inspirations([], [], 3, 3, set(), random.Random(0)) == []


def test_migration_ring_and_skip_rule():
    bests = {0: prog("b0", 0.5, 0), 1: prog("b1", 0.6, 1), 2: None, 3: prog("b3", 0.7, 3)}
    held = {(2, "h-b1")}  # island 2 already holds b1's code
    plan = migration_plan(bests, 4, lambda island, h: (island, h) in held)
    assert [(p.id, target) for p, target in plan] == [("b0", 1), ("b3", 0)]
    everything = migration_plan(bests, 4, lambda island, h: False)
    assert [(p.id, target) for p, target in everything] == [("b0", 1), ("b1", 2), ("b3", 0)]
    assert migration_plan({0: prog("solo", 1.0)}, 1, lambda i, h: False) == []


def test_stagnant_islands():
    history = {
        0: [0.1, 0.2, 0.3, 0.4],  # improving
        1: [0.5, 0.5, 0.5, 0.5],  # flat for 3 points
        2: [0.1, 0.6, 0.6, 0.6],  # flat for 2 points only
        3: [0.5, 0.5],  # too short to judge
        4: [0.9, 0.3, 0.4, 0.8],  # below its old best the whole window
    }
    assert stagnant_islands(history, patience=3) == [1, 4]
    assert stagnant_islands(history, patience=2) == [1, 2, 4]
    with pytest.raises(ValueError):
        stagnant_islands(history, patience=0)


def test_reset_plan_uses_best_survivor_from_another_island():
    survivors = [prog("s0", 0.9, island=0), prog("s1", 0.7, island=1), prog("bad", None, 2)]
    plan = reset_plan([0, 2], survivors)
    assert [(p.id, island) for p, island in plan] == [("s1", 0), ("s0", 2)]
    assert reset_plan([0], [prog("s0", 0.9, island=0)]) == []
    assert reset_plan([], survivors) == []


def test_one_order_of_best_everywhere(tmp_path):
    """Equal scores rank the same in the population, the selectors, migration, resets and
    the reports, whatever order the programs were stored in."""
    from evolve.database import Database
    from evolve.population import Population
    from evolve.records import best_first
    from evolve.reports import write_reports

    tied = [prog("b", 0.5, generation=2), prog("a", 0.5, generation=2),
            prog("c", 0.5, generation=1), prog("d", 0.4, generation=0)]
    for order in (tied, tied[::-1]):
        assert [p.id for p in best_first(order)] == ["c", "a", "b", "d"]
        assert Population(1, order).best(0, 10).id == "c"
        assert PowerLawRank(alpha=60).select(order, random.Random(1)).id == "c"
        assert Tournament(size=4).select(order, random.Random(1)).id == "c"
        assert migration_plan({0: Population(2, order).best(0, 10)}, 2,
                              lambda *_: False)[0][0].id == "c"
        assert reset_plan([1], order)[0][0].id == "c"
    run_dir = tmp_path / "run"
    with Database(tmp_path / "run.db") as db:
        db.add_programs(tied[::-1])
        write_reports(db, run_dir)
    assert (run_dir / "leaderboard.csv").read_text().splitlines()[1].split(",")[1] == "c"
    assert (run_dir / "best" / "program.py").read_text() == "# c"
