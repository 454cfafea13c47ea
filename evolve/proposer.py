"""What to ask for in one generation: parent, partner, patch type, model, prompt.

Every choice comes from the generation's own random stream and the programs
visible to it (see `evolve.population`), so it is the same live or resumed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from evolve import selection
from evolve.config import ModelConfig, RunConfig
from evolve.llm import estimate_tokens
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


def generation_rng(seed: int, generation: int) -> random.Random:
    """The random stream of one generation (string seeds hash the same in every process)."""
    return random.Random(f"{seed}:{generation}")


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

    def plan(self, generation: int, population: Population, cutoff: int,
             choose_model) -> Proposal:
        """Choose parent, patch type and model for `generation`; build its prompt.

        `choose_model(rng)` names the model to ask (ignored offline). Raises
        prompts.PromptTooLong when even the parent does not fit the model's window.
        """
        rng = generation_rng(self.evo.seed, generation)
        island = (generation - 1) % self.evo.num_islands
        candidates = population.visible(island, cutoff) or population.visible(None, cutoff)
        parent = self.parent_selector.select(candidates, rng)
        patch_type = self._patch_type(rng)
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
            {parent.id, other.id if other else ""}, rng)
        failed = sorted((p for p in population.visible(island, cutoff, valid_only=False)
                         if not p.valid), key=lambda p: (p.generation, p.id))  # not finish order
        failures = [
            (f"generation {p.generation} ({p.patch_type}, {p.model})", p.error or "")
            for p in failed][-self.evo.failures_in_prompt:] if self.evo.failures_in_prompt else []
        prompt = build_prompt(
            self.templates_dir, patch_type, self.task_description, parent,
            inspirations, failures, other, model.context_window - model.max_tokens,
            estimate_tokens, self.config.task.engine.fitness,
            self.config.task.engine.prompt_metrics)
        return Proposal(generation, island, parent, other, patch_type, model.name,
                        temperature, prompt)

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
