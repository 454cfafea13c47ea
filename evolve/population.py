"""The programs the loop can see, in memory, by island, with a visibility cut-off.

Generation g may only look at programs of generations <= g - max_in_flight
(all of which are finished before g starts), so the choices made for g do not
depend on timing: the same seed and the same replies give the same run, live
or resumed.
"""

from __future__ import annotations

from evolve.fingerprint import fingerprints
from evolve.records import Program, best_first


def evaluated(program: Program) -> bool:
    """Whether the program's row holds the result of its own evaluation (not a copy, not a
    duplicate, not a failure before or during evaluation)."""
    if program.patch_type in ("migrant", "reference"):
        return False
    return program.outcome in ("valid", "invalid") or (program.outcome == "" and program.valid)


class Population:
    """Programs per island, appended as they finish; seeds have generation 0."""

    def __init__(self, num_islands: int, programs: list[Program] = ()):
        self.num_islands = num_islands
        self.by_island: dict[int, list[Program]] = {i: [] for i in range(num_islands)}
        self.structures: dict[str, list[Program]] = {}  # evaluated programs by structure
        self.shapes: dict[tuple[int, str], list[Program]] = {}  # ... by (island, shape)
        self.by_id: dict[str, Program] = {}
        for program in programs:
            self.add(program)

    def add(self, program: Program) -> None:
        """Record a finished program (or a migrant copy).

        References (patch_type "reference") are only known by id: never parents,
        inspirations, migrants or duplicates of a child; the reports rank them.
        """
        self.by_id[program.id] = program
        if program.patch_type == "reference":
            return
        self.by_island.setdefault(program.island, []).append(program)
        if evaluated(program):
            structure, shape = fingerprints(program.code)
            self.structures.setdefault(structure, []).append(program)
            self.shapes.setdefault((program.island, shape), []).append(program)

    def visible(self, island: int | None, cutoff: int, valid_only: bool = True) -> list[Program]:
        """Programs of one island (or all) with generation <= cutoff."""
        islands = range(self.num_islands) if island is None else [island]
        return [p for i in islands for p in self.by_island.get(i, [])
                if p.generation <= cutoff and (p.valid or not valid_only)]

    def best(self, island: int | None, cutoff: int) -> Program | None:
        """The highest-scoring visible valid program (earliest on ties)."""
        ranked = top(self.visible(island, cutoff), 1)
        return ranked[0] if ranked else None

    def twin(self, structure: str) -> Program | None:
        """The earliest evaluated program (any island, any generation) with this structure
        hash (`evolve.fingerprint`); references and migrant copies are never twins."""
        found = self.structures.get(structure, ())
        return min(found, key=lambda p: (p.generation, p.id)) if found else None

    def variants(self, island: int, shape: str, cutoff: int) -> list[Program]:
        """The island's evaluated programs of generations <= cutoff with this shape hash
        (alike up to numeric literals), earliest first."""
        return sorted((p for p in self.shapes.get((island, shape), ()) if p.generation <= cutoff),
                      key=lambda p: (p.generation, p.id))

    def holds(self, island: int, code_hash: str, cutoff: int | None = None,
              generation: int | None = None) -> bool:
        """Whether the island already has a program with this code.

        With `cutoff` and `generation` (a generation about to start), only what is
        settled at that point counts, live or resumed: programs of generations <= cutoff
        and migrants copied before `generation`.
        """
        return any(p.code_hash == code_hash and (
            cutoff is None or p.generation <= cutoff
            or (p.patch_type == "migrant" and generation is not None
                and p.generation < generation))
            for p in self.by_island.get(island, []))


def top(programs: list[Program], n: int) -> list[Program]:
    """The n best valid programs (`records.best_first` order)."""
    return best_first(programs)[:n]
