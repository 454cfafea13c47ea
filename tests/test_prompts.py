from dataclasses import replace
from pathlib import Path

import pytest

from evolve.memory import Memory
from evolve.prompts import Prompt, PromptTooLong, build_prompt, format_metrics
from evolve.records import Program

TEMPLATES = Path(__file__).resolve().parents[1] / "configs" / "prompts"
TASK = "Place the replicas of MoE experts on GPUs so that the load is balanced."

PROGRAM = """import torch

# EVOLVE-BLOCK-START
def balanced_packing(weight: torch.Tensor, num_packs: int):
    slack = 1.05
    return weight * slack


def replicate_experts(weight: torch.Tensor, num_phy: int):
    hot = 0.25
    return weight * hot
# EVOLVE-BLOCK-END


def run(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return replicate_experts(balanced_packing(weight, num_gpus), num_replicas)
"""

PARENT = Program(
    id="parent-7",
    code=PROGRAM,
    generation=7,
    island=1,
    valid=True,
    score=0.612345,
    metrics={
        "time_ms": 3.21987,
        "speed_score": 0.4,
        "balancedness_gpu": 0.8765,
        "combined_score": 0.612345,
    },
    feedback="GPU 5 carries 31% more load than the mean.",
)


def inspiration(k: int, score: float | None) -> Program:
    return Program(
        id=f"insp-{k}",
        code=PROGRAM.replace("slack = 1.05", f"slack = {k}.5"),
        generation=k,
        island=0,
        valid=score is not None,
        score=score,
        metrics={} if score is None else {"combined_score": score},
    )


INSPIRATIONS = [inspiration(1, 0.3), inspiration(2, 0.5), inspiration(3, None), inspiration(4, 0.4)]
FAILURES = [
    ("diff: vectorise balanced_packing", "IndexError: index 9 is out of bounds"),
    ("full: greedy by load", "timeout after 60 s"),
]


SHOWN = ("balancedness_gpu", "time_ms", "no_such_metric")


def build(patch_type="diff", budget=32768, **kwargs) -> Prompt:
    args = dict(inspirations=INSPIRATIONS, failures=FAILURES)
    args.update(kwargs)
    return build_prompt(TEMPLATES, patch_type, TASK, PARENT, token_budget=budget,
                        fitness="combined_score", shown_metrics=SHOWN, **args)


def size(prompt: Prompt) -> int:
    return len(prompt.system) // 4 + 1 + len(prompt.user) // 4 + 1


def test_prompt_contains_parent_metrics_feedback_failures():
    prompt = build()
    assert TASK in prompt.system
    assert "SEARCH" in prompt.system and "EVOLVE-BLOCK-START" in prompt.system
    assert PROGRAM.strip() in prompt.user
    assert "combined_score=0.6123 balancedness_gpu=0.8765 time_ms=3.22" in prompt.user
    assert "GPU 5 carries 31% more load" in prompt.user
    for description, error in FAILURES:
        assert description in prompt.user and error in prompt.user
    assert prompt.trimmed == ()


def test_inspirations_best_first():
    user = build().user
    positions = [user.index(f"## Program insp-{k}") for k in (2, 4, 1, 3)]
    assert positions == sorted(positions)


def test_full_and_cross_formats():
    full = build("full")
    assert "```python" in full.system and "<<<<<<< SEARCH" not in full.system
    other = inspiration(9, 0.55)
    cross = build("cross", other_parent=other)
    assert "slack = 9.5" in cross.user
    assert cross.user.index("## Program parent-7") < cross.user.index("## Program insp-9")
    with pytest.raises(ValueError):
        build("cross")
    with pytest.raises(ValueError):
        build("rewrite")


def test_parent_error_is_shown():
    broken = Program(id="b", code=PROGRAM, generation=1, island=0, error="ZeroDivisionError")
    prompt = build_prompt(TEMPLATES, "full", TASK, broken, [], [], fitness="combined_score")
    assert "ZeroDivisionError" in prompt.user
    assert "combined_score=invalid" in prompt.user


def test_format_metrics_orders_and_compacts():
    metrics = {"zeta": 12345.678, "time_ms": 0.000123456, "combined_score": 1}
    line = format_metrics(metrics, 1, "combined_score")
    assert line == "combined_score=1 time_ms=0.0001235 zeta=12346"  # all, by name
    chosen = format_metrics(metrics, 1, "combined_score", ("zeta", "missing", "time_ms"))
    assert chosen == "combined_score=1 zeta=12346 time_ms=0.0001235"  # the shown, in order
    assert format_metrics(metrics, None, "fit", ("zeta",)) == "fit=invalid zeta=12346"


def test_trims_worst_inspiration_first():
    full = build()
    without_worst = build(inspirations=INSPIRATIONS[:2] + INSPIRATIONS[3:])
    prompt = build(budget=size(without_worst))
    assert prompt.trimmed == ("1 of 4 inspirations",)
    assert "insp-3" not in prompt.user and "insp-1" in prompt.user
    assert size(prompt) < size(full)


def test_trims_all_inspirations_then_failures():
    bare = build(inspirations=[], failures=FAILURES[1:])
    prompt = build(budget=size(bare))
    assert prompt.trimmed == ("4 of 4 inspirations", "1 of 2 failures")
    assert "insp-" not in prompt.user
    assert FAILURES[1][0] in prompt.user and FAILURES[0][0] not in prompt.user


def test_truncates_feedback_last():
    bare = build(inspirations=[], failures=[])
    prompt = build(budget=size(bare) - 3)
    assert prompt.trimmed == ("4 of 4 inspirations", "2 of 2 failures", "parent feedback truncated")
    assert "feedback truncated" in prompt.user
    assert PROGRAM.strip() in prompt.user
    assert size(prompt) <= size(bare) - 3


def test_prompt_too_long():
    with pytest.raises(PromptTooLong, match="budget is 50"):
        build(budget=50)


MEMORY = Memory(children=("- generation 8 (diff): child idea A -> failed: boom",
                          "- generation 9 (diff): child idea B -> score 0.7000 (+0.0877)"),
                gained=("- +0.0877: gained idea A (generation 9)",
                        "- +0.0100: gained idea B (generation 3)"),
                flat=("- flat idea A (generation 2: failed)", "- flat idea B (generation 4: x)"),
                advice="- advice: stop tuning margins")


def test_memory_direction_and_ideas_are_shown():
    ideas = [replace(p, idea=f"idea of {p.id}") for p in INSPIRATIONS]
    prompt = build(inspirations=ideas, memory=MEMORY, direction="Forecast the load.")
    user = prompt.user
    for line in (*MEMORY.children, *MEMORY.gained, *MEMORY.flat, MEMORY.advice,
                 "Forecast the load.", "Idea: idea of insp-2"):
        assert line in user
    order = ["# Recent failed attempts", "# What earlier children", "# Ideas tried on this",
             "# Advice from a summary", "# Research direction", "# Your task"]
    assert [user.index(h) for h in order] == sorted(user.index(h) for h in order)
    assert "# What earlier children" not in build().user and "# Research" not in build().user


def test_memory_is_trimmed_in_the_stated_order():
    kwargs = dict(inspirations=[], memory=MEMORY, direction="Forecast the load.")
    full = build(**kwargs)
    # with no room for anything optional, every part goes, in order, then the feedback
    bare = build(inspirations=[], failures=[], direction="Forecast the load.")
    prompt = build(budget=size(bare) - 3, **kwargs)
    assert prompt.trimmed == ("2 of 2 ideas that gained nothing", "2 of 2 ideas that gained most",
                              "2 of 2 failures", "2 of 2 children's attempts",
                              "1 of 1 summary advice", "parent feedback truncated")
    assert "Forecast the load." in prompt.user  # the direction is never dropped
    # one line less than everything: only the oldest idea that gained nothing goes
    one_less = build(budget=size(full) - 1, **kwargs)
    assert one_less.trimmed == ("1 of 2 ideas that gained nothing",)
    assert "flat idea A" not in one_less.user and "flat idea B" in one_less.user
