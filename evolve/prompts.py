"""Build the system and user messages for one mutation request.

Templates are text files in a templates directory (see configs/prompts/README.md),
filled with `string.Template` ($name placeholders). Inspirations are shown best first;
one with the same id as the parent or the other parent is skipped. Every program shown
carries its stated idea; the memory (`evolve.memory`) and the research direction have
sections of their own.

If the prompt is larger than `token_budget`, parts are dropped in this order until it
fits, and each step is recorded in `Prompt.trimmed`:
  1. inspirations, worst first, one at a time;
  2. the island ledger's ideas that gained nothing, oldest first, one at a time;
  3. the island ledger's ideas that gained most, smallest gain first, one at a time;
  4. failed attempts, first entries (the oldest) first, one at a time;
  5. what the parent's children tried, oldest first, one at a time;
  6. the advice of the LLM summary, whole;
  7. the parent's evaluator feedback, cut shorter and shorter down to nothing.
The research direction is never dropped. If the system message plus the parent code
still do not fit, `PromptTooLong` is raised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from evolve.memory import Memory
from evolve.records import Program

PATCH_TYPES = ("diff", "full", "cross")
_TRUNCATED = "\n[... feedback truncated ...]"


class PromptTooLong(ValueError):
    """Even the system message and the parent code alone exceed the token budget."""


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt and the list of parts that were dropped to fit the budget."""

    system: str
    user: str
    trimmed: tuple[str, ...] = ()


def _fmt(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = str(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    if value != 0 and 1e4 <= abs(value) < 1e9:
        return f"{value:.0f}"
    return f"{value:.4g}"


def format_metrics(metrics: dict, score: float | None = None, fitness: str = "score",
                   shown: tuple[str, ...] = ()) -> str:
    """One line `key=value ...` in compact numbers: the fitness first ('invalid' without
    a score), then the `shown` metrics in their order (every other metric, by name, when
    `shown` is empty)."""
    items = {fitness: "invalid" if score is None else score}
    keys = shown or tuple(sorted(metrics, key=str))
    items.update((k, metrics[k]) for k in keys if k in metrics and k != fitness)
    return " ".join(f"{k}={_fmt(v)}" for k, v in items.items())


def _sort_key(program: Program) -> float:
    return -math.inf if program.score is None else program.score


def _notes(program: Program) -> str:
    parts = [program.feedback.strip()] if program.feedback.strip() else []
    if program.error:
        parts.append("Error:\n" + program.error.strip())
    return "\n".join(parts)


class _Templates:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def render(self, name: str, **values: str) -> str:
        text = (self.directory / f"{name}.txt").read_text()
        return Template(text).substitute(**values).strip("\n")


# Optional parts, in the order they are dropped, each from its end (-1) or start (0).
_TRIM_ORDER = (("inspirations", -1), ("flat", 0), ("gained", -1), ("failures", 0),
               ("children", 0), ("advice", 0))
_TRIM_LABELS = {"inspirations": "inspirations", "flat": "ideas that gained nothing",
                "gained": "ideas that gained most", "failures": "failures",
                "children": "children's attempts", "advice": "summary advice"}


def _section(t: _Templates, name: str, lines, **values: str) -> str:
    """A rendered section followed by a blank line, or "" when it has nothing to show."""
    return t.render(name, items="\n".join(lines), **values) + "\n\n" if lines else ""


def build_prompt(
    templates_dir: Path,
    patch_type: str,
    task_description: str,
    parent: Program,
    inspirations: list[Program],
    failures: list[tuple[str, str]],
    other_parent: Program | None = None,
    token_budget: int = 32768,
    estimate_tokens: Callable[[str], int] = lambda s: len(s) // 4 + 1,
    fitness: str = "score",
    shown_metrics: tuple[str, ...] = (),
    memory: Memory | None = None,
    direction: str = "",
) -> Prompt:
    """Render the prompt for `patch_type`, trimming to `token_budget` (see module docstring).

    Each program's metrics are shown as `format_metrics(..., fitness, shown_metrics)`;
    `direction` is the research direction this request is asked to follow ("" for none).
    """
    if patch_type not in PATCH_TYPES:
        raise ValueError(f"unknown patch type {patch_type!r}; expected one of {PATCH_TYPES}")
    if patch_type == "cross" and other_parent is None:
        raise ValueError("patch type 'cross' needs other_parent")
    t = _Templates(templates_dir)
    rules = t.render("rules_diff" if patch_type == "diff" else "rules_full")
    system = t.render("system", task_description=task_description.strip(), format_rules=rules)

    def program(p: Program, title: str, notes: str = "") -> str:
        text = t.render(
            "program", title=title, code=p.code.rstrip(),
            idea=f"Idea: {p.idea}\n" if p.idea else "",
            metrics=format_metrics(p.metrics, p.score, fitness, shown_metrics))
        return text + ("\n\n" + t.render("feedback", feedback=notes) if notes else "")

    direction_part = t.render("direction", direction=direction.strip()) + "\n\n" \
        if direction.strip() else ""

    def render(parts: dict[str, list], notes: str) -> str:
        values = {"parent": program(parent, f"Program {parent.id}", notes)}
        if other_parent is not None and patch_type == "cross":
            values["other_parent"] = program(other_parent, f"Program {other_parent.id}")
        insp = parts["inspirations"]
        progs = "\n\n".join(program(p, f"Program {p.id}") for p in insp)
        values["inspirations"] = t.render("inspirations", programs=progs) + "\n\n" if insp else ""
        items = [t.render("failure", description=d, error=e.strip().replace("\n", "\n    "))
                 for d, e in parts["failures"]]
        values["failures"] = _section(t, "failures", items)
        values["children"] = _section(t, "children", parts["children"])
        values["ledger"] = t.render(
            "ledger", gained="\n".join(parts["gained"]) or "- none yet",
            flat="\n".join(parts["flat"]) or "- none yet") + "\n\n" \
            if parts["gained"] or parts["flat"] else ""
        values["advice"] = _section(t, "advice", parts["advice"])
        values["direction"] = direction_part
        return t.render(patch_type, **values)

    def fits(user: str) -> bool:
        return estimate_tokens(system) + estimate_tokens(user) <= token_budget

    memory = memory or Memory()
    shown = {parent.id, other_parent.id if other_parent else None}
    parts = {
        "inspirations": sorted((p for p in inspirations if p.id not in shown),
                               key=_sort_key, reverse=True),
        "failures": list(failures), "children": list(memory.children),
        "gained": list(memory.gained), "flat": list(memory.flat),
        "advice": [memory.advice] if memory.advice else [],
    }
    notes = _notes(parent)
    trimmed: list[str] = []
    user = render(parts, notes)
    for key, end in _TRIM_ORDER:
        total = len(parts[key])
        while not fits(user) and parts[key]:
            parts[key].pop(end)
            user = render(parts, notes)
        if len(parts[key]) < total:
            trimmed.append(f"{total - len(parts[key])} of {total} {_TRIM_LABELS[key]}")
    if not fits(user) and notes:
        user = _truncate_notes(notes, lambda n: render(parts, n), fits)
        trimmed.append("parent feedback truncated")
    if not fits(user):
        raise PromptTooLong(
            f"prompt needs {estimate_tokens(system)} (system) + {estimate_tokens(user)} (user) "
            f"tokens after trimming everything optional, but the budget is {token_budget}"
        )
    return Prompt(system=system, user=user, trimmed=tuple(trimmed))


def _truncate_notes(notes: str, render, fits) -> str:
    """The longest rendering whose feedback is a prefix of `notes` that fits (or none)."""
    lo, hi = 0, len(notes) - 1  # invariant: a prefix of length `lo` fits or lo == 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(render(notes[:mid] + _TRUNCATED)):
            lo = mid
        else:
            hi = mid - 1
    return render(notes[:lo] + _TRUNCATED) if lo else render("")


def build_summary_prompt(templates_dir: Path, task_description: str, ledger: str,
                         token_budget: int = 32768,
                         estimate_tokens: Callable[[str], int] = lambda s: len(s) // 4 + 1
                         ) -> Prompt:
    """The request of the optional LLM summary: the ledgers of ideas, to be condensed into
    advice for later prompts; the ledger's last lines are cut to fit `token_budget`."""
    t = _Templates(templates_dir)
    system = t.render("summary_system", task_description=task_description.strip())
    lines = ledger.splitlines()
    user = t.render("summary", ledger=ledger)
    trimmed = []
    while estimate_tokens(system) + estimate_tokens(user) > token_budget and lines:
        lines.pop()
        user = t.render("summary", ledger="\n".join(lines))
        trimmed = ["ledger cut"]
    return Prompt(system=system, user=user, trimmed=tuple(trimmed))
