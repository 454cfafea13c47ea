"""Built-in mutation operator used when no LLM endpoint is configured.

It exists to exercise the pipeline (patching, evaluation, database, islands) end to
end without a model; it is not meant to find good programs. Two operators:
  * constant perturbation: change one numeric literal inside the EVOLVE block;
  * function crossover: replace one top-level function of the parent's EVOLVE block
    with the same-named function from the other program's EVOLVE block.
"""

from __future__ import annotations

import ast
import io
import random
import tokenize

from evolve.patches import PatchError, split_evolve_block


def _literals(code: str, first: int, last: int) -> list[tokenize.TokenInfo]:
    """NUMBER tokens (real, not imaginary) on lines first..last (1-based, inclusive)."""
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return [
        tok
        for tok in tokens
        if tok.type == tokenize.NUMBER
        and first <= tok.start[0] <= last
        and not tok.string.lower().endswith("j")
    ]


def _new_value(value: int | float, rng: random.Random) -> str:
    factor = rng.uniform(0.5, 2.0)
    if isinstance(value, int):
        new = round(value * factor) if value else 1
        if new == value:
            new = value + rng.choice((-1, 1))
        if value >= 1:
            new = max(1, new)
        if new == value:
            new = value + 1
        return str(new)
    new = float(f"{value * factor:.4g}") if value else round(rng.uniform(0.01, 1.0), 4)
    if new == value:
        new = value * 2
    return repr(new)


def _perturb_constant(code: str, rng: random.Random) -> tuple[str, str] | None:
    head, body, _ = split_evolve_block(code)
    first = head.count("\n") + 1
    try:
        candidates = _literals(code, first, first + body.count("\n") - 1)
    except (tokenize.TokenError, SyntaxError):
        return None
    if not candidates:
        return None
    tok = rng.choice(candidates)
    new = _new_value(ast.literal_eval(tok.string), rng)
    lines = code.splitlines(keepends=True)
    row, col = tok.start
    line = lines[row - 1]
    lines[row - 1] = line[:col] + new + line[tok.end[1] :]
    return "".join(lines), f"offline: constant {tok.string} -> {new} at line {row}"


def _functions(body: str) -> dict[str, tuple[int, int]]:
    """Top-level functions of a block body: name -> (first line, last line), 1-based."""
    tree = ast.parse(body)
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            out[node.name] = (start, node.end_lineno or node.lineno)
    return out


def _crossover(code: str, other: str, rng: random.Random) -> tuple[str, str] | None:
    try:
        head, body, tail = split_evolve_block(code)
        other_body = split_evolve_block(other)[1]
        mine, theirs = _functions(body), _functions(other_body)
    except (PatchError, SyntaxError):
        return None
    lines, other_lines = body.splitlines(keepends=True), other_body.splitlines(keepends=True)

    def source(ls: list[str], span: tuple[int, int]) -> list[str]:
        return ls[span[0] - 1 : span[1]]

    names = [
        n for n in mine if n in theirs and source(lines, mine[n]) != source(other_lines, theirs[n])
    ]
    if not names:
        return None
    name = rng.choice(names)
    (a, b) = mine[name]
    lines[a - 1 : b] = source(other_lines, theirs[name])
    return head + "".join(lines) + tail, f"offline: crossover of function {name}"


def offline_mutation(
    parent_code: str, other_code: str | None, rng: random.Random
) -> tuple[str, str]:
    """Return (new_code, description): a crossover or a constant change, chosen by `rng`.

    Crossover is only possible when `other_code` is given, differs from the parent and
    shares a differing top-level function; whichever operator `rng` picks first, the
    other one is tried when it is impossible. Raises PatchError when neither applies.
    """

    def constant():
        return _perturb_constant(parent_code, rng)

    def crossover():
        return _crossover(parent_code, other_code, rng)

    operators = [constant]
    if other_code is not None and other_code != parent_code:
        operators = [crossover, constant] if rng.random() < 0.5 else [constant, crossover]
    for operator in operators:
        result = operator()
        if result is None or result[0] == parent_code:
            continue
        try:
            compile(result[0], "<offline>", "exec")
        except SyntaxError as exc:
            raise PatchError(f"offline operator produced invalid code: {exc}") from exc
        return result
    raise PatchError("offline operator found nothing to mutate")
