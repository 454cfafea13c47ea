"""Structural fingerprints (evolve.fingerprint) and the idea parser (evolve.ideas)."""

from __future__ import annotations

from evo_helpers import INITIAL_CODE

from evolve.fingerprint import shape_hash, structure_hash
from evolve.ideas import MAX_IDEA_CHARS, parse_idea

BASE = '''import torch

LIMIT = 3


def pack(weight, num_packs):
    """Greedy packing."""
    order = weight.argsort(descending=True)
    loads = [0.0] * num_packs
    for item in order.tolist():
        best = min(range(num_packs), key=lambda k: loads[k])
        loads[best] += float(weight[item]) * 1.05
    return loads
'''

RENAMED = '''import torch

LIMIT = 3


def pack(weight, num_packs):
    # sort first, heaviest item first
    ranking = weight.argsort(descending=True)
    totals = [0.0] * num_packs

    for x in ranking.tolist():
        target = min(range(num_packs), key=lambda j: totals[j])   # lightest pack
        totals[target] += float(weight[x]) * 1.05
    return totals
'''


def test_renamed_locals_comments_and_docstrings_do_not_change_the_structure():
    assert structure_hash(RENAMED) == structure_hash(BASE)
    noted = INITIAL_CODE.replace("# EVOLVE-BLOCK-END", "# note\n# EVOLVE-BLOCK-END")
    assert structure_hash(noted) == structure_hash(INITIAL_CODE)


def test_interface_names_and_operations_change_the_structure():
    variants = [
        BASE.replace("def pack(", "def pack2("),  # a function other code calls
        BASE.replace("num_packs", "packs"),  # a parameter, passed by keyword perhaps
        BASE.replace("LIMIT = 3", "CAP = 3"),  # a module-level name
        BASE.replace("argsort(descending=True)", "argsort(descending=False)"),
        BASE.replace("loads[best] += ", "loads[best] -= "),
    ]
    hashes = {structure_hash(v) for v in variants}
    assert len(hashes) == len(variants) and structure_hash(BASE) not in hashes


def test_numeric_literals_change_the_structure_but_not_the_shape():
    tweak = BASE.replace("* 1.05", "* 1.10").replace("LIMIT = 3", "LIMIT = 4")
    assert structure_hash(tweak) != structure_hash(BASE)
    assert shape_hash(tweak) == shape_hash(BASE) == shape_hash(RENAMED)
    assert shape_hash(BASE.replace("True", "False")) != shape_hash(BASE)  # bools are not numbers
    assert shape_hash(BASE.replace("loads[best] +=", "loads[best] -=")) != shape_hash(BASE)


def test_code_that_does_not_parse_is_hashed_as_text():
    assert structure_hash("def f(:\n") == structure_hash("def f(:\n")
    assert structure_hash("def f(:\n") != structure_hash("def g(:\n")


def test_idea_line_wins_anywhere_outside_code():
    reply = ("Some preamble.\n**Idea:** forecast the load with an EMA of the history\n\n"
             "<<<<<<< SEARCH\n# Idea: not this one\n=======\nx = 1\n>>>>>>> REPLACE\n")
    assert parse_idea(reply) == "forecast the load with an EMA of the history"
    assert parse_idea("```python\nIdea: inside code\n```\nIdea: outside") == "outside"


def test_without_an_idea_line_the_first_sentence_of_the_prose():
    assert parse_idea("A full rewrite, variant 3. It packs better.\n\n```python\nx=1\n```") \
        == "A full rewrite, variant 3."
    assert parse_idea("```python\nx = 1\n```\n\nUse water-filling.\nMore text") \
        == "Use water-filling."
    assert parse_idea("```python\nx = 1\n```") == ""
    assert parse_idea(None) == parse_idea("") == ""
    long = parse_idea("Idea: " + "word " * 100)
    assert len(long) == MAX_IDEA_CHARS and long.endswith("...")


def test_nested_helpers_and_closures_are_renamed_consistently():
    a = "def f(x):\n    def helper(y):\n        return y + x\n    out = helper(1)\n    return out\n"
    b = "def f(x):\n    def inner(z):\n        return z + x\n    res = inner(1)\n    return res\n"
    assert structure_hash(a) != structure_hash(b)  # inner's parameter name differs (kept)
    c = "def f(x):\n    def inner(y):\n        return y + x\n    res = inner(1)\n    return res\n"
    assert structure_hash(a) == structure_hash(c)
    assert structure_hash(a) != structure_hash(c.replace("y + x", "y + 1"))
