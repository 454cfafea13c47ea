"""What to ask for in one generation: parent, partner, patch type, model, direction, prompt.

Every choice comes from the generation's own random stream and the programs
visible to it (see `evolve.population`), so it is the same live or resumed. The
research direction comes from a stream of its own (`directions`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from evolve import selection
from evolve.config import ModelConfig, RunConfig
from evolve.llm import estimate_tokens
from evolve.memory import build_memory
from evolve.population import Population, top
from evolve.prompts import Prompt, build_prompt
from evolve.records import Program

OFFLINE_MODEL = "offline"


@dataclass(frozen=True)
class Proposal:
    """One planned child: who its parents are and how it will be made."""

    generation: int
    island: int
    parent: Program
    other: Program | None
    patch_type: str  # diff | full | cross | offline
    model: str
    temperature: float = 0.0
    prompt: Prompt | None = None
    direction: str = ""  # the name of the research direction asked for ("" for none)


def generation_rng(seed: int, generation: int) -> random.Random:
    """The random stream of one generation (string seeds hash the same in every process)."""
    return random.Random(f"{seed}:{generation}")


def directions(seed: int, upto: int, names: list[str], window: int) -> list[str]:
    """The research direction of generations 1..upto, each drawn from its own stream
    (`seed:direction:g`) among the names not drawn for the `window - 1` generations before
    it. Generations that can be in flight together are fewer than `window` apart, so they
    get different directions whenever there are at least `window` names."""
    chosen: list[str] = []
    recent = min(window, len(names)) - 1
    for generation in range(1, upto + 1):
        taken = set(chosen[-recent:]) if recent > 0 else set()
        options = [n for n in names if n not in taken]
        chosen.append(random.Random(f"{seed}:direction:{generation}").choice(options))
    return chosen


class Proposer:
    """Plans proposals for the loop; `models` are the configured (reachable) ones and
    `task_description` is the task's text for the prompt (`Task.describe`)."""

    def __init__(self, config: RunConfig, models: list[ModelConfig], templates_dir: Path,
                 task_description: str = ""):
        self.config = config
        self.task_description = task_description
        self.evo = config.evolution
        self.models = {m.name: m for m in models}
        self.templates_dir = templates_dir
        self.parent_selector = selection.make_parent_selector(
            self.evo.parent_selection, **self.evo.selection_options)
        self.directions = dict(config.task.engine.directions)
        self.drawn: list[str] = []  # directions of generations 1..len(drawn)

    def direction(self, generation: int) -> str:
        """The name of generation's research direction ("" when the task lists none)."""
        if not self.directions:
            return ""
        if len(self.drawn) < generation:
            self.drawn = directions(self.evo.seed, max(generation, 2 * len(self.drawn)),
                                    list(self.directions), self.evo.max_in_flight)
        return self.drawn[generation - 1]

    def _direction_text(self, generation: int, name: str) -> str:
        """The direction's text; when directions cannot keep the prompts in flight apart,
        a note naming this request's slot among them does (slots differ within a window)."""
        text = self.directions.get(name, "")
        window = self.evo.max_in_flight
        if window > 1 and len(self.directions) < window:
            slot = (generation - 1) % window + 1
            text += (f"\n\nThis is request {slot} of {window} under way at once on related "
                     "prompts: take an approach the others are unlikely to take.")
        return text.strip()

    def plan(self, generation: int, population: Population, cutoff: int,
             choose_model, choose_patch=None, advice: str = "") -> Proposal:
        """Choose parent, patch type, model and direction for `generation`; build its prompt.

        `choose_model(rng)` names the model to ask (ignored offline); `choose_patch(rng)`,
        if given, names the patch type instead of the configured probabilities; `advice`
        is the latest LLM summary. Raises prompts.PromptTooLong when even the parent does
        not fit the model's window.
        """
        rng = generation_rng(self.evo.seed, generation)
        island = (generation - 1) % self.evo.num_islands
        candidates = population.visible(island, cutoff) or population.visible(None, cutoff)
        parent = self.parent_selector.select(candidates, rng)
        patch_type = choose_patch(rng) if choose_patch and self.models else self._patch_type(rng)
        other = self._partner(population, cutoff, island, parent, rng) \
            if patch_type == "cross" or not self.models else None
        if patch_type == "cross" and other is None:
            patch_type = "full"
        if not self.models:
            return Proposal(generation, island, parent, other, "offline", OFFLINE_MODEL)
        model = self.models[choose_model(rng)]
        temperature = rng.choice(model.temperatures)
        inspirations = selection.pick_inspirations(
            top(population.visible(island, cutoff), self.evo.inspirations_island + 2),
            top(population.visible(None, cutoff), 20),
            self.evo.inspirations_island, self.evo.inspirations_archive,
            {parent.id, other.id if other else ""}, rng,
            exclude_hashes={parent.code_hash, other.code_hash if other else ""})
        island_programs = population.visible(island, cutoff, valid_only=False)
        failed = sorted((p for p in island_programs if not p.valid),
                        key=lambda p: (p.generation, p.id))  # not finish order
        failures = [
            (f"generation {p.generation} ({p.patch_type}, {p.model})"
             + (f", idea: {p.idea}" if p.idea else ""), p.error or "")
            for p in failed][-self.evo.failures_in_prompt:] if self.evo.failures_in_prompt else []
        memory = build_memory(parent, island_programs, population.by_id,
                              self.evo.memory_children, self.evo.memory_ledger, advice)
        direction = self.direction(generation)
        prompt = build_prompt(
            self.templates_dir, patch_type, self.task_description, parent,
            inspirations, failures, other, model.context_window - model.max_tokens,
            estimate_tokens, self.config.task.engine.fitness,
            self.config.task.engine.prompt_metrics, memory,
            self._direction_text(generation, direction))
        return Proposal(generation, island, parent, other, patch_type, model.name,
                        temperature, prompt, direction)

    def _patch_type(self, rng: random.Random) -> str:
        kinds = sorted(k for k, v in self.evo.patch_types.items() if float(v) > 0)
        return rng.choices(kinds, weights=[float(self.evo.patch_types[k]) for k in kinds])[0]

    def _partner(self, population: Population, cutoff: int, island: int, parent: Program,
                 rng: random.Random) -> Program | None:
        """A second parent: the best of a random other island, else another of this one."""
        others = [i for i in range(self.evo.num_islands) if i != island]
        rng.shuffle(others)
        for other_island in others:
            best = population.best(other_island, cutoff)
            if best is not None and best.code_hash != parent.code_hash:
                return best
        mates = [p for p in population.visible(island, cutoff)
                 if p.code_hash != parent.code_hash]
        return self.parent_selector.select(mates, rng) if mates else None
