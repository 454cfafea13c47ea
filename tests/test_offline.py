import ast
import random
import re

import pytest

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
    new, description = offline_mutation(PROGRAM, None, random.Random(seed))
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
    results = [offline_mutation(PROGRAM, OTHER, random.Random(s)) for s in range(30)]
    wanted = "offline: crossover of function replicate_experts"
    crossed = [code for code, d in results if d == wanted]
    assert crossed, [d for _, d in results]
    assert crossed[0] == OTHER
    assert all(d.startswith("offline: constant") for code, d in results if code != OTHER)


def test_crossover_with_identical_other_falls_back_to_constant():
    for seed in range(10):
        _, description = offline_mutation(PROGRAM, PROGRAM, random.Random(seed))
        assert description.startswith("offline: constant")


def test_nothing_to_mutate():
    code = "import torch\n# EVOLVE-BLOCK-START\ndef f(x):\n    return x\n# EVOLVE-BLOCK-END\n"
    code += "\n\ndef run(x):\n    return f(x) * 2\n"
    with pytest.raises(PatchError, match="offline operator found nothing to mutate"):
        offline_mutation(code, None, random.Random(0))
