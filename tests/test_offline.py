import ast
import random
import re
from pathlib import Path

import pytest

from evolve.fingerprint import structure_hash
from evolve.offline import offline_mutation
from evolve.patches import PatchError, split_evolve_block

PROGRAM = '''import torch

NUM_TRIALS = 3

# EVOLVE-BLOCK-START
def balanced_packing(weight: torch.Tensor, num_packs: int):
    """Greedy packing, heaviest first."""
    slack = 1.05
    rounds = 4
    for _ in range(rounds):
        weight = weight * slack
    return weight


def replicate_experts(weight: torch.Tensor, num_phy: int):
    hot = 0.25
    return weight * hot
# EVOLVE-BLOCK-END


def run(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return replicate_experts(balanced_packing(weight, 8), num_replicas)
'''

OTHER = PROGRAM.replace(
    "    hot = 0.25\n    return weight * hot\n",
    "    order = weight.argsort()\n    return weight[order]\n",
)


CROSS = ("crossover", "constant")


def frozen(code: str) -> tuple[str, str]:
    head, _, tail = split_evolve_block(code)
    return head, tail


def literal_values(code: str) -> list:
    body = split_evolve_block(code)[1]
    nodes = ast.walk(ast.parse(body))
    return sorted(
        (type(n.value).__name__, n.value)
        for n in nodes
        if isinstance(n, ast.Constant) and type(n.value) in (int, float)
    )


@pytest.mark.parametrize("seed", range(20))
def test_constant_mutation_compiles_differs_and_keeps_types(seed):
    new, description = offline_mutation(PROGRAM, None, random.Random(seed), ["constant"])
    compile(new, "<t>", "exec")
    assert new != PROGRAM
    assert frozen(new) == frozen(PROGRAM)
    m = re.fullmatch(r"offline: constant (\S+) -> (\S+) at line (\d+)", description)
    assert m, description
    old, value, line = m.group(1), m.group(2), int(m.group(3))
    assert old in PROGRAM.splitlines()[line - 1]
    assert value in new.splitlines()[line - 1]
    before, after = literal_values(PROGRAM), literal_values(new)
    assert [t for t, _ in before] == [t for t, _ in after]
    if "." in old:
        assert 0.5 <= float(value) / float(old) <= 2.0 + 1e-3
    else:
        assert int(value) >= 1


def test_constant_mutation_is_deterministic():
    first = offline_mutation(PROGRAM, OTHER, random.Random(42))
    again = offline_mutation(PROGRAM, OTHER, random.Random(42))
    assert first == again
    outcomes = {offline_mutation(PROGRAM, None, random.Random(s))[1] for s in range(10)}
    assert len(outcomes) > 1


def test_crossover_swaps_a_function():
    results = [offline_mutation(PROGRAM, OTHER, random.Random(s), CROSS) for s in range(30)]
    wanted = "offline: crossover of function replicate_experts"
    crossed = [code for code, d in results if d == wanted]
    assert crossed, [d for _, d in results]
    assert crossed[0] == OTHER
    assert all(d.startswith("offline: constant") for code, d in results if code != OTHER)


def test_crossover_with_identical_other_falls_back_to_constant():
    for seed in range(10):
        _, description = offline_mutation(PROGRAM, PROGRAM, random.Random(seed), CROSS)
        assert description.startswith("offline: constant")


def test_nothing_to_mutate():
    code = "import torch\n# EVOLVE-BLOCK-START\ndef f(x):\n    return x\n# EVOLVE-BLOCK-END\n"
    code += "\n\ndef run(x):\n    return f(x) * 2\n"
    with pytest.raises(PatchError, match="offline operator found nothing to mutate"):
        offline_mutation(code, None, random.Random(0))


# ---------------------------------------------------------------- structural operators


def program(block: str) -> str:
    """A program whose EVOLVE block is `block`; the frozen code has a site of every kind."""
    frozen_code = "def run(x):\n    if x < 1 and max(x, 2) == 3:\n        x += 1\n    a = x + 1\n"
    frozen_code += "    b = x * 2\n    return a * b\n"
    return f"import math\n\n# EVOLVE-BLOCK-START\n{block}# EVOLVE-BLOCK-END\n\n\n{frozen_code}"


@pytest.mark.parametrize("operator, block, expected, description", [
    ("operator", "def f(x):\n    return x < 3\n", "def f(x):\n    return x <= 3\n",
     "offline: operator < -> <= at line 5"),
    ("operator", "def f(x):\n    if x != 3:\n        x -= 1\n    return x\n",
     None, r"offline: operator (!= -> ==|-= -> \+=) at line [56]"),
    ("name", "def f(x):\n    return sorted(x, reverse=True)\n",
     "def f(x):\n    return sorted(x, reverse=False)\n", "offline: name True -> False at line 5"),
    ("name", "def f(x):\n    return max(x)  # the largest\n",
     "def f(x):\n    return min(x)  # the largest\n", "offline: name max -> min at line 5"),
    ("operands", "def f(a, b, c):\n    return (a - b) * c  # keep\n",
     "def f(a, b, c):\n    return c * (a - b)  # keep\n",
     r"offline: operands of \* swapped at line 5"),
    ("operands", "def f(a, b):\n    s = 'é'; return math.ceil(len(s) +\n        a) - b\n",
     "def f(a, b):\n    s = 'é'; return math.ceil(a + len(s)) - b\n",
     r"offline: operands of \+ swapped at line 5"),
    ("statements", "def f(x):\n    a = x  # first\n\n    b = g(x)\n    return a, b\n",
     "def f(x):\n    b = g(x)\n\n    a = x  # first\n    return a, b\n",
     "offline: statements at lines 5 and 7 swapped"),
    ("statements", "def f(x):\n    a = g(\n        x)\n    x.sort()\n    return a\n",
     "def f(x):\n    x.sort()\n    a = g(\n        x)\n    return a\n",
     "offline: statements at lines 5 and 7 swapped"),
])
def test_structural_operator(operator, block, expected, description):
    parent = program(block)
    for seed in range(5):
        new, said = offline_mutation(parent, None, random.Random(seed), [operator])
        assert re.fullmatch(description, said), said
        assert frozen(new) == frozen(parent)
        if expected is not None:
            assert split_evolve_block(new)[1] == expected
        assert structure_hash(new) != structure_hash(parent)
        compile(new, "<t>", "exec")


def test_structural_operators_touch_one_spot():
    parent = program("def f(x):\n    if x != 3:\n        x -= 1\n    return x\n")
    results = {offline_mutation(parent, None, random.Random(s), ["operator"])[0] for s in range(20)}
    assert {split_evolve_block(r)[1] for r in results} == {
        "def f(x):\n    if x == 3:\n        x -= 1\n    return x\n",
        "def f(x):\n    if x != 3:\n        x += 1\n    return x\n",
    }


@pytest.mark.parametrize("operator, block", [
    ("operands", "def f(a):\n    return a + a\n"),  # swapped: the same program
    ("statements", "def f(x):\n    a = 1; b = 2\n    return a\n"),  # no statement owns its line
    ("statements", "def f(x):\n    '''Doc.'''\n    a = 1\n    return a\n"),  # docstrings stay
    ("operands", "def f(a, b):\n    return a - b @ a\n"),  # not commutative
])
def test_structural_operator_finds_nothing(operator, block):
    with pytest.raises(PatchError, match="offline operator found nothing to mutate"):
        offline_mutation(program(block), None, random.Random(0), [operator])


def test_offline_mutation_of_the_initial_program_gives_distinct_structures():
    parent = (Path(__file__).resolve().parents[1] / "initial.py").read_text()
    results = [offline_mutation(parent, None, random.Random(s)) for s in range(40)]
    assert {d.split()[1] for _, d in results} == {
        "constant", "operator", "name", "operands", "statements"}
    for code, _ in results:
        assert frozen(code) == frozen(parent)
        compile(code, "<t>", "exec")
    structures = {structure_hash(code) for code, _ in results} - {structure_hash(parent)}
    assert len(structures) >= len(results) // 2
    assert results == [offline_mutation(parent, None, random.Random(s)) for s in range(40)]
