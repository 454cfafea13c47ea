"""Built-in mutation operator used when no LLM endpoint is configured.

It exists to exercise the pipeline (patching, evaluation, database, islands, the run
page) end to end without a model; it is not meant to find good programs, and many of
its children fail. It knows nothing of the task: every operator works on any Python
program's EVOLVE block and edits only the spot it changes (text outside the block, and
the rest of the block, stay byte-identical). The operators (`OPERATORS`):
  * constant: change one numeric literal;
  * crossover: replace one top-level function with the same-named function from the
    other program's EVOLVE block;
  * operator: flip one comparison (< <=, > >=, == !=) or augmented assignment (+= -=);
  * name: swap one name for its opposite (min max, argmin argmax, True False, ...);
  * operands: swap the two operands of one +, *, &, | or ^;
  * statements: swap two adjacent simple statements (assignments, expressions).
"""

from __future__ import annotations

import ast
import io
import random
import tokenize
from collections.abc import Sequence
from itertools import pairwise

from evolve.fingerprint import structure_hash
from evolve.patches import PatchError, split_evolve_block

_FLIPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==",
          "+=": "-=", "-=": "+="}
_PAIRS = [("min", "max"), ("argmin", "argmax"), ("minimum", "maximum"), ("True", "False"),
          ("any", "all")]
_OPPOSITES = dict(_PAIRS + [(b, a) for a, b in _PAIRS])
_COMMUTATIVE = {ast.Add: "+", ast.Mult: "*", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^"}
_SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)


def _lines(code: str) -> list[str]:
    """The lines of `code` as the tokenizer and parser number them (ends kept)."""
    return io.StringIO(code, newline="").readlines()


def _block_span(code: str) -> tuple[int, int]:
    """First and last line (1-based) of the EVOLVE block's body."""
    head, body, _ = split_evolve_block(code)
    first = head.count("\n") + 1
    return first, first + body.count("\n") - 1


def _splice(code: str, start: tuple[int, int], end: tuple[int, int], new: str) -> str:
    """`code` with the text from `start` to `end` ((line, character column)) replaced."""
    lines = _lines(code)
    (row, col), (end_row, end_col) = start, end
    lines[row - 1 : end_row] = [lines[row - 1][:col] + new + lines[end_row - 1][end_col:]]
    return "".join(lines)


def _tokens(code: str) -> list[tokenize.TokenInfo]:
    """The tokens on the EVOLVE block's lines ([] when the code does not tokenize)."""
    first, last = _block_span(code)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code, newline="").readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    return [tok for tok in tokens if first <= tok.start[0] <= last]


def _nodes(code: str) -> list[ast.AST]:
    """The syntax tree's nodes lying inside the EVOLVE block ([] when it does not parse)."""
    first, last = _block_span(code)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    return [n for n in ast.walk(tree)
            if hasattr(n, "end_lineno") and first <= n.lineno and n.end_lineno <= last]


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


def _perturb_constant(code: str, other, rng: random.Random) -> tuple[str, str] | None:
    candidates = [tok for tok in _tokens(code) if tok.type == tokenize.NUMBER
                  and not tok.string.lower().endswith("j")]
    if not candidates:
        return None
    tok = rng.choice(candidates)
    new = _new_value(ast.literal_eval(tok.string), rng)
    return (_splice(code, tok.start, tok.end, new),
            f"offline: constant {tok.string} -> {new} at line {tok.start[0]}")


def _swap_token(code: str, rng: random.Random, kind: str, token_type: int,
                table: dict[str, str]) -> tuple[str, str] | None:
    """Replace one token of `token_type` found in `table` by its entry there."""
    candidates = [tok for tok in _tokens(code) if tok.type == token_type and tok.string in table]
    if not candidates:
        return None
    tok = rng.choice(candidates)
    new = table[tok.string]
    return (_splice(code, tok.start, tok.end, new),
            f"offline: {kind} {tok.string} -> {new} at line {tok.start[0]}")


def _flip_operator(code: str, other, rng: random.Random) -> tuple[str, str] | None:
    return _swap_token(code, rng, "operator", tokenize.OP, _FLIPS)


def _swap_name(code: str, other, rng: random.Random) -> tuple[str, str] | None:
    return _swap_token(code, rng, "name", tokenize.NAME, _OPPOSITES)


def _column(line: str, byte_offset: int) -> int:
    """The character column of a parser column (a UTF-8 byte offset) on `line`."""
    return len(line.encode()[:byte_offset].decode())


def _swap_operands(code: str, other, rng: random.Random) -> tuple[str, str] | None:
    nodes = [n for n in _nodes(code) if isinstance(n, ast.BinOp) and type(n.op) in _COMMUTATIVE]
    if not nodes:
        return None
    node = rng.choice(nodes)
    swapped = ast.unparse(ast.BinOp(left=node.right, op=node.op, right=node.left))
    lines = _lines(code)
    start = (node.lineno, _column(lines[node.lineno - 1], node.col_offset))
    end = (node.end_lineno, _column(lines[node.end_lineno - 1], node.end_col_offset))
    return (_splice(code, start, end, swapped),
            f"offline: operands of {_COMMUTATIVE[type(node.op)]} swapped at line {node.lineno}")


def _own_lines(statement: ast.stmt, lines: list[str]) -> bool:
    """Whether the statement has its lines to itself (a trailing comment is allowed)."""
    before = lines[statement.lineno - 1].encode()[: statement.col_offset]
    after = lines[statement.end_lineno - 1].encode()[statement.end_col_offset :].strip()
    return not before.strip() and (not after or after.startswith(b"#"))


def _swap_statements(code: str, other, rng: random.Random) -> tuple[str, str] | None:
    lines = _lines(code)

    def simple(s: ast.stmt) -> bool:
        docstring = isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
        return isinstance(s, _SIMPLE) and not docstring and _own_lines(s, lines)

    pairs = []
    for node in _nodes(code):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list):
                pairs += [(a, b) for a, b in pairwise(body) if simple(a) and simple(b)]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    first, second = lines[a.lineno - 1 : a.end_lineno], lines[b.lineno - 1 : b.end_lineno]
    lines[b.lineno - 1 : b.end_lineno] = first  # the later one first: keeps a's indices
    lines[a.lineno - 1 : a.end_lineno] = second
    return "".join(lines), f"offline: statements at lines {a.lineno} and {b.lineno} swapped"


def _functions(body: str) -> dict[str, tuple[int, int]]:
    """Top-level functions of a block body: name -> (first line, last line), 1-based."""
    tree = ast.parse(body)
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            out[node.name] = (start, node.end_lineno or node.lineno)
    return out


def _crossover(code: str, other: str | None, rng: random.Random) -> tuple[str, str] | None:
    if other is None or other == code:
        return None
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


OPERATORS = {
    "constant": _perturb_constant,
    "crossover": _crossover,
    "operator": _flip_operator,
    "name": _swap_name,
    "operands": _swap_operands,
    "statements": _swap_statements,
}


def offline_mutation(
    parent_code: str, other_code: str | None, rng: random.Random,
    operators: Sequence[str] = tuple(OPERATORS),
) -> tuple[str, str]:
    """Return (new_code, description) made by one of `operators` (names in `OPERATORS`).

    `rng` orders the operators and each one picks its spot, so one seed gives one
    result. An operator that finds nothing to change, or whose result has the parent's
    structure (evolve.fingerprint), gives way to the next. Crossover needs `other_code`
    (different from the parent, sharing a differing top-level function). Raises
    PatchError when no operator applies.
    """
    split_evolve_block(parent_code)  # PatchError when the markers are wrong
    order = list(operators)
    rng.shuffle(order)
    parent_structure = structure_hash(parent_code)
    for name in order:
        result = OPERATORS[name](parent_code, other_code, rng)
        if result is None or structure_hash(result[0]) == parent_structure:
            continue
        try:
            compile(result[0], "<offline>", "exec")
        except SyntaxError as exc:
            raise PatchError(f"offline operator produced invalid code: {exc}") from exc
        return result
    raise PatchError("offline operator found nothing to mutate")
