import pytest

from evolve.patches import (
    PatchError,
    apply_diff,
    apply_full,
    apply_reply,
    code_hash,
    normalize_code,
    split_evolve_block,
)

PROGRAM = '''"""Candidate expert-placement algorithm."""

import torch

# EVOLVE-BLOCK-START
def balanced_packing(weight: torch.Tensor, num_packs: int):
    """Assign items to packs greedily, heaviest first."""
    order = weight.argsort(descending=True)
    slack = 1.05
    for idx in order.tolist():
        weight[idx] = weight[idx] * slack
    return weight


def replicate_experts(weight: torch.Tensor, num_phy: int):
    # hot experts get extra replicas
    hot = 0.25
    if num_phy > 2:
        return weight * hot
    return weight
# EVOLVE-BLOCK-END


def run(weight, num_replicas, num_groups, num_nodes, num_gpus):
    packed = balanced_packing(weight, num_gpus)
    return replicate_experts(packed, num_replicas)
'''


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def body_of(code: str) -> str:
    return split_evolve_block(code)[1]


def test_split_evolve_block_parts():
    head, body, tail = split_evolve_block(PROGRAM)
    assert head.endswith("# EVOLVE-BLOCK-START\n")
    assert body.startswith("def balanced_packing")
    assert tail.startswith("# EVOLVE-BLOCK-END\n")
    assert head + body + tail == PROGRAM


@pytest.mark.parametrize(
    "code",
    [
        PROGRAM.replace("# EVOLVE-BLOCK-END\n", ""),
        PROGRAM + "# EVOLVE-BLOCK-START\n",
        "# EVOLVE-BLOCK-END\nx = 1\n# EVOLVE-BLOCK-START\n",
    ],
)
def test_split_rejects_bad_markers(code):
    with pytest.raises(PatchError):
        split_evolve_block(code)


def test_diff_single_block_with_fences_and_prose():
    reply = (
        "I will relax the slack.\n```\n"
        + block("    slack = 1.05", "    slack = 1.10")
        + "```\nThat is all."
    )
    new = apply_diff(PROGRAM, reply)
    assert "slack = 1.10" in new
    assert "slack = 1.05" not in new
    assert new.replace("slack = 1.10", "slack = 1.05") == PROGRAM


def test_diff_two_blocks_applied_in_order():
    reply = (
        block("    hot = 0.25", "    hot = 0.5")
        + "\n"
        + block("    hot = 0.5\n    if num_phy > 2:", "    hot = 0.5\n    if num_phy > 4:")
    )
    new = apply_diff(PROGRAM, reply)
    assert "    hot = 0.5\n    if num_phy > 4:\n" in new


def test_diff_indentation_drift_is_reindented():
    search = "for idx in order.tolist():\n    weight[idx] = weight[idx] * slack"
    replace = (
        "for idx in order.tolist():\n"
        "    if weight[idx] > 0:\n"
        "        weight[idx] = weight[idx] * slack"
    )
    new = apply_diff(PROGRAM, block(search, replace))
    assert (
        "    for idx in order.tolist():\n"
        "        if weight[idx] > 0:\n"
        "            weight[idx] = weight[idx] * slack\n"
    ) in new
    compile(new, "<t>", "exec")


def test_diff_over_indented_search_is_dedented():
    search = "        hot = 0.25\n        if num_phy > 2:"
    new = apply_diff(PROGRAM, block(search, "        hot = 0.3\n        if num_phy > 2:"))
    assert "\n    hot = 0.3\n    if num_phy > 2:\n" in new


def test_diff_trailing_whitespace_drift():
    code = PROGRAM.replace("    slack = 1.05\n", "    slack = 1.05   \n")
    new = apply_diff(code, block("    slack = 1.05", "    slack = 2.0"))
    assert "    slack = 2.0\n" in new


def test_diff_blank_line_differences_ignored():
    search = "    return weight\ndef replicate_experts(weight: torch.Tensor, num_phy: int):"
    replace = "    return weight\n\n\ndef replicate_experts(weight, num_phy):"
    new = apply_diff(PROGRAM, block(search, replace))
    assert "def replicate_experts(weight, num_phy):" in new
    assert "return weight * hot" in new


def test_diff_no_match_names_closest_line():
    with pytest.raises(PatchError) as info:
        apply_diff(PROGRAM, block("    slack = 1.5", "    slack = 2.0"))
    message = str(info.value)
    line = PROGRAM.splitlines().index("    slack = 1.05") + 1
    assert f"line {line}" in message
    assert "slack = 1.05" in message
    assert "similarity" in message


def test_diff_ambiguous_match_reports_count():
    with pytest.raises(PatchError, match="matches 2 times"):
        apply_diff(PROGRAM, block("    return weight", "    return weight + 1"))


def test_diff_outside_block_rejected():
    search = "def run(weight, num_replicas, num_groups, num_nodes, num_gpus):"
    with pytest.raises(PatchError, match="outside the EVOLVE-BLOCK are not allowed"):
        apply_diff(PROGRAM, block(search, "def run(*args):"))


def test_diff_touching_marker_rejected():
    search = "    return weight\n# EVOLVE-BLOCK-END"
    with pytest.raises(PatchError, match="outside the EVOLVE-BLOCK are not allowed"):
        apply_diff(PROGRAM, block(search, "    return weight"))


def test_diff_without_blocks():
    with pytest.raises(PatchError, match="reply contains no SEARCH/REPLACE block"):
        apply_diff(PROGRAM, "I think the code is fine as it is.")


def test_diff_that_changes_nothing():
    with pytest.raises(PatchError, match="patch changes nothing"):
        apply_diff(PROGRAM, block("    hot = 0.25", "    hot = 0.25"))


NEW_BODY = """def balanced_packing(weight, num_packs):
    return weight


def replicate_experts(weight, num_phy):
    return weight * 0.5
"""


def test_full_with_markers_keeps_frozen_parts():
    reply = (
        "Here is a simpler version:\n```python\nimport numpy\n# EVOLVE-BLOCK-START\n"
        + NEW_BODY
        + "# EVOLVE-BLOCK-END\n\ndef run(*a):\n    pass\n```\n"
    )
    new = apply_full(PROGRAM, reply)
    head, body, tail = split_evolve_block(new)
    assert body == NEW_BODY
    assert head == split_evolve_block(PROGRAM)[0]
    assert tail == split_evolve_block(PROGRAM)[2]
    assert "import numpy" not in new


def test_full_without_markers_is_the_body():
    reply = "```python\n" + NEW_BODY + "```"
    assert body_of(apply_full(PROGRAM, reply)) == NEW_BODY


def test_full_takes_largest_code_block():
    reply = "```python\n" + NEW_BODY + "```\nUse it like:\n```\nrun(w, 8, 2, 1, 4)\n```\n"
    assert body_of(apply_full(PROGRAM, reply)) == NEW_BODY


def test_full_without_code_block():
    with pytest.raises(PatchError, match="reply contains no code block"):
        apply_full(PROGRAM, "def f(): pass")


def test_reply_dispatch_and_unknown_type():
    reply = "```python\n" + NEW_BODY + "```"
    assert apply_reply("cross", PROGRAM, reply) == apply_reply("full", PROGRAM, reply)
    assert "hot = 0.3" in apply_reply("diff", PROGRAM, block("    hot = 0.25", "    hot = 0.3"))
    with pytest.raises(ValueError, match="unknown patch type"):
        apply_reply("rewrite", PROGRAM, reply)


def test_reply_syntax_error_reports_line():
    with pytest.raises(PatchError) as info:
        apply_reply("diff", PROGRAM, block("    hot = 0.25", "    hot = (0.25"))
    line = PROGRAM.splitlines().index("    hot = 0.25") + 1
    assert "SyntaxError" in str(info.value)
    assert f"line {line}" in str(info.value)


def test_normalize_ignores_comments_blank_lines_trailing_spaces():
    noisy = PROGRAM.replace("    hot = 0.25\n", "    hot = 0.25  # tuned\n\n   \n")
    noisy = noisy.replace("    # hot experts get extra replicas\n", "")
    assert code_hash(noisy) == code_hash(PROGRAM)
    assert "#" not in normalize_code(PROGRAM)
    assert '"""Assign items to packs greedily, heaviest first."""' in normalize_code(PROGRAM)


def test_hash_changes_with_constant_and_docstring():
    assert code_hash(PROGRAM.replace("hot = 0.25", "hot = 0.26")) != code_hash(PROGRAM)
    assert code_hash(PROGRAM.replace("greedily", "lazily")) != code_hash(PROGRAM)


def test_normalize_falls_back_on_untokenizable_code():
    broken = "x = (1,\n# note\n\ny = 2   \n"
    assert normalize_code(broken) == "x = (1,\ny = 2"


def test_full_with_unclosed_fence_says_so():
    with pytest.raises(PatchError, match="never closed"):
        apply_full(PROGRAM, "```python\n" + NEW_BODY)
