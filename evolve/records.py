"""Plain records passed between the engine's modules: programs and LLM calls, and the
one ordering of programs by fitness."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Program:
    """One candidate program and what its evaluation said about it.

    `score` is the fitness the engine maximises (the task's `engine.fitness` metric);
    it is None for invalid programs. `metrics` holds every number the task
    reported; `feedback` is the short text the task wants the next prompt to see.
    """

    id: str
    code: str
    generation: int
    island: int
    parent_id: str | None = None
    other_parent_id: str | None = None
    patch_type: str = "initial"  # initial | diff | full | cross | offline | migrant | reference
    model: str | None = None
    valid: bool = False
    score: float | None = None
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    feedback: str = ""
    code_hash: str = ""
    eval_seconds: float = 0.0
    created_at: float = 0.0
    outcome: str = ""  # one of OUTCOMES; "" in rows stored before outcomes were recorded
    idea: str = ""  # the proposal's one-line idea, as the reply stated it
    direction: str = ""  # the research direction the prompt asked for, if any
    duplicate_of: str | None = None  # the program whose code this one repeats


# What became of a proposal: evaluated ("valid", "invalid") or stopped before ("duplicate",
# "no_patch": the reply held no usable patch, "llm_error", "timeout": killed by the
# watchdog, "prompt_too_long", "operator_failed": the offline operator found nothing).
OUTCOMES = ("valid", "invalid", "duplicate", "no_patch", "llm_error", "timeout",
            "prompt_too_long", "operator_failed")


@dataclass(frozen=True)
class LLMCall:
    """One request to a model (after retries) and what came back."""

    generation: int
    model: str
    temperature: float
    system: str
    user: str
    reply: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    attempts: int = 1
    error: str | None = None
    created_at: float = 0.0
    purpose: str = "mutation"  # mutation (a generation's proposal) | summary (of the ledgers)


def best_first(programs: Iterable[Program]) -> list[Program]:
    """Scored programs, best first: the engine's one ordering of 'best'.

    Highest score, then earliest generation, then id, so equal scores rank the same
    wherever they are ranked (population, selection, reports) and in any input order.
    """
    scored = [p for p in programs if p.valid and p.score is not None]
    return sorted(scored, key=lambda p: (-p.score, p.generation, p.id))
