"""What the search remembers for the next prompt, from stored programs only (no LLM call).

For the parent: what its children tried (idea, score change or why it failed). For the
island: a ledger of the ideas that gained most over their parents and of those that
gained nothing. Callers pass only programs visible to the generation being planned
(`evolve.population`), so the memory, like every other choice, is the same live or resumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from evolve.records import Program

_NO_IDEA = "(no idea stated)"


@dataclass(frozen=True)
class Memory:
    """Lines for the prompt's memory sections; `advice` is an optional LLM summary."""

    children: tuple[str, ...] = ()  # the parent's children, oldest first
    gained: tuple[str, ...] = ()  # the island's ideas that gained most, best first
    flat: tuple[str, ...] = ()  # the island's ideas that gained nothing, oldest first
    advice: str = ""

    def __bool__(self) -> bool:
        return bool(self.children or self.gained or self.flat or self.advice)


def _first_line(text: str | None, limit: int = 120) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def gain(child: Program, programs: Mapping[str, Program]) -> float | None:
    """The child's score minus its parent's (None unless both are scored)."""
    parent = programs.get(child.parent_id or "")
    if not child.valid or child.score is None or parent is None or parent.score is None:
        return None
    return child.score - parent.score


def result_text(child: Program, programs: Mapping[str, Program]) -> str:
    """What became of a child, in a few words: its score change or why it failed."""
    delta = gain(child, programs)
    if delta is not None:
        return f"score {child.score:.4f} ({delta:+.4f} over its parent)"
    if child.outcome == "duplicate":
        return f"duplicate of {child.duplicate_of}, not evaluated"
    if child.outcome == "timeout":
        return "killed: too slow"
    reason = _first_line(child.error)
    return f"failed: {reason}" if reason else "failed"


def _children(programs: Iterable[Program]) -> list[Program]:
    """Proposals (not seeds, migrants or references) that stated an idea or were tried."""
    return sorted((p for p in programs if p.generation >= 1 and p.parent_id
                   and p.patch_type not in ("migrant", "reference")
                   and p.outcome != "llm_error" and p.outcome != "prompt_too_long"),
                  key=lambda p: (p.generation, p.id))


def _label(child: Program) -> str:
    direction = f", {child.direction}" if child.direction else ""
    return f"generation {child.generation} ({child.patch_type}{direction})"


def build_memory(parent: Program, island_programs: Iterable[Program],
                 programs: Mapping[str, Program], children_limit: int,
                 ledger_limit: int, advice: str = "") -> Memory:
    """The memory for a prompt about `parent`.

    `island_programs` are the island's visible programs (failed ones included),
    `programs` every known program by id (to find parents' scores). At most
    `children_limit` latest children and `ledger_limit` ideas per ledger list.
    """
    tried = _children(island_programs)
    own = [c for c in tried if c.parent_id == parent.id][-children_limit:] \
        if children_limit else []
    notes = tuple(f"- {_label(c)}: {c.idea or _NO_IDEA} -> {result_text(c, programs)}"
                  for c in own)
    gained, flat = [], []
    if ledger_limit:
        scored = [(gain(c, programs), c) for c in tried if c.idea]
        best = sorted(((d, c) for d, c in scored if d is not None and d > 0),
                      key=lambda dc: (-dc[0], dc[1].generation))
        gained = [f"- {d:+.4f}: {c.idea} (generation {c.generation})"
                  for d, c in _distinct(best)[:ledger_limit]]
        nothing = [(d, c) for d, c in scored if d is None or d <= 0]
        flat = [f"- {c.idea} (generation {c.generation}: {result_text(c, programs)})"
                for _, c in _distinct(nothing[::-1])[:ledger_limit]][::-1]
    return Memory(notes, tuple(gained), tuple(flat), advice.strip())


def _distinct(items: list[tuple[float | None, Program]]) -> list[tuple[float | None, Program]]:
    """The first item of each idea text (case and spacing ignored)."""
    seen, kept = set(), []
    for delta, child in items:
        key = " ".join(child.idea.lower().split())
        if key not in seen:
            seen.add(key)
            kept.append((delta, child))
    return kept


def ledger_text(programs: Iterable[Program], by_id: Mapping[str, Program], limit: int) -> str:
    """Every island's ledger as plain text, for the optional LLM summary."""
    by_island: dict[int, list[Program]] = {}
    for p in programs:
        by_island.setdefault(p.island, []).append(p)
    sections = []
    for island in sorted(by_island):
        memory = build_memory(Program("", "", 0, island), by_island[island], by_id, 0, limit)
        if memory:
            sections.append(f"Island {island}, gained most:\n" + "\n".join(memory.gained or
                            ["- nothing yet"]) + "\nGained nothing:\n"
                            + "\n".join(memory.flat or ["- nothing yet"]))
    return "\n\n".join(sections)
