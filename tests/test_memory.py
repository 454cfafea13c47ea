"""What the prompt remembers (evolve.memory) and the research directions (evolve.proposer)."""

from __future__ import annotations

from evolve.memory import build_memory, ledger_text
from evolve.proposer import directions
from evolve.records import Program


def child(g: int, parent: str, idea: str, score: float | None = None, outcome: str = "",
          **fields) -> Program:
    return Program(f"g{g:06d}", "x", g, 0, parent_id=parent, patch_type="diff", model="m",
                   valid=score is not None, score=score, idea=idea,
                   outcome=outcome or ("valid" if score is not None else "invalid"), **fields)


SEED = Program("seed", "x", 0, 0, valid=True, score=0.5, outcome="valid")
PROGRAMS = [
    SEED,
    child(1, "seed", "forecast with an EMA", 0.6),
    child(2, "seed", "risk margin on the forecast", 0.5),
    child(3, "g000001", "more replicas for hot experts", 0.65),
    child(4, "seed", "vectorise the packing", error="IndexError: out of range\nmore"),
    child(5, "seed", "copy of 1", outcome="duplicate", duplicate_of="g000001"),
    child(6, "seed", "", outcome="llm_error"),
    Program("m000007-0", "x", 7, 0, parent_id="g000003", patch_type="migrant", valid=True,
            score=0.65, outcome="valid"),
]
BY_ID = {p.id: p for p in PROGRAMS}


def test_children_of_the_parent_with_their_result():
    memory = build_memory(SEED, PROGRAMS, BY_ID, 10, 0)
    assert memory.children == (
        "- generation 1 (diff): forecast with an EMA -> score 0.6000 (+0.1000 over its parent)",
        "- generation 2 (diff): risk margin on the forecast -> score 0.5000 (+0.0000 over its "
        "parent)",
        "- generation 4 (diff): vectorise the packing -> failed: IndexError: out of range",
        "- generation 5 (diff): copy of 1 -> duplicate of g000001, not evaluated",
    )  # the LLM error says nothing tried; migrants are not children; g3 is not seed's
    assert build_memory(SEED, PROGRAMS, BY_ID, 2, 0).children == memory.children[-2:]
    assert not build_memory(SEED, PROGRAMS, BY_ID, 0, 0)


def test_island_ledger_best_gains_and_ideas_that_gained_nothing():
    memory = build_memory(SEED, PROGRAMS, BY_ID, 0, 5)
    assert memory.gained == ("- +0.1000: forecast with an EMA (generation 1)",
                             "- +0.0500: more replicas for hot experts (generation 3)")
    assert [line.split(" (generation")[0] for line in memory.flat] == [
        "- risk margin on the forecast", "- vectorise the packing", "- copy of 1"]
    one = build_memory(SEED, PROGRAMS, BY_ID, 0, 1)
    assert one.gained == memory.gained[:1] and one.flat == memory.flat[-1:]  # latest kept
    assert "Island 0, gained most:" in ledger_text(PROGRAMS, BY_ID, 5)


def test_directions_differ_within_a_window_and_are_reproducible():
    names = ["a", "b", "c", "d", "e", "f"]
    drawn = directions(3, 60, names, 4)
    assert drawn == directions(3, 60, names, 4) and drawn[:10] == directions(3, 10, names, 4)
    assert drawn != directions(4, 60, names, 4)
    assert all(len(set(drawn[i:i + 4])) == 4 for i in range(57))
    assert set(drawn) == set(names)
    few = directions(3, 30, ["a", "b"], 4)  # fewer names than the window: alternate
    assert all(x != y for x, y in zip(few, few[1:], strict=False))
