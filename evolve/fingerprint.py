"""Structural fingerprints of programs, for catching duplicates before evaluation.

`structure_hash` is the same for two programs that differ only in comments, blank lines,
formatting, docstrings and the names of local variables inside functions and of lambda
parameters (renamed canonically, in order of first appearance). Module-level names,
function and class names, function parameters and attributes are kept: other code, and
callers passing keywords, depend on them, so two programs with one structure hash
behave the same and one's result stands for the other's.

`shape_hash` also forgets the values of numeric literals: programs sharing a shape are
variants of one structure that only change numbers (they behave differently, so each
is evaluated; the engine caps how many per island).

Code that does not parse falls back to a hash of its text.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache

_NUMBER = "<number>"  # not an identifier, so no program can contain this name


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _drop_docstring(body: list[ast.stmt]) -> None:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body[:1] = [] if len(body) > 1 else [ast.Pass()]


def _bound_locals(function: ast.AST) -> list[str]:
    """Names a function (or lambda) binds in its own scope, in source order; its
    parameters and names declared global or nonlocal are left out."""
    declared = {name for node in ast.walk(function) if isinstance(node, ast.Global | ast.Nonlocal)
                for name in node.names}
    params = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
    found: list[str] = []
    if isinstance(function, ast.Lambda):  # nothing calls a lambda by keyword: rename those
        found, params = [a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)], set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                found.append(child.name)  # bound here; its body is its own scope
                continue
            if isinstance(child, ast.Lambda):
                continue
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                found.append(child.id)
            elif isinstance(child, ast.ExceptHandler) and child.name:
                found.append(child.name)
            elif isinstance(child, ast.alias):
                found.append((child.asname or child.name).split(".")[0])
            visit(child)

    body = function.body if isinstance(function.body, list) else [function.body]
    for statement in body:
        visit(ast.Module(body=[statement], type_ignores=[]))
    return [n for n in dict.fromkeys(found) if n not in params and n not in declared]


class _Canonical(ast.NodeVisitor):
    """Drops docstrings and renames each function's local variables canonically, in place."""

    def __init__(self):
        self.scopes: list[dict[str, str]] = []
        self.counter = 0

    def _lookup(self, name: str) -> str:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return name

    def _function(self, node) -> None:
        if not isinstance(node, ast.Lambda):
            _drop_docstring(node.body)
            node.name = self._lookup(node.name)  # renamed only when nested in a function
            for decorator in node.decorator_list:  # these belong to the enclosing scope,
                self.visit(decorator)
            if node.returns is not None:
                self.visit(node.returns)
        self.visit(node.args)  # ... as do defaults and annotations
        scope = {}
        for name in _bound_locals(node):
            scope[name] = f"_v{self.counter}"
            self.counter += 1
        if isinstance(node, ast.Lambda):
            for arg in ast.walk(node.args):
                if isinstance(arg, ast.arg):
                    arg.arg = scope[arg.arg]
        self.scopes.append(scope)
        for statement in node.body if isinstance(node.body, list) else [node.body]:
            self.visit(statement)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        _drop_docstring(node.body)
        node.name = self._lookup(node.name)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        node.id = self._lookup(node.id)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            node.name = self._lookup(node.name)
        self.generic_visit(node)


def _tokens(node, tokens: list[str], numbers: list[int]) -> None:
    """The tree as a flat token list (node types, fields in order, literal values);
    `numbers` gets the positions of numeric literals' values."""
    if isinstance(node, ast.AST):
        tokens.append(type(node).__name__)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, int | float | complex) and not isinstance(value, bool):
                numbers.append(len(tokens))
            tokens.append(repr(value))
        else:
            for name in node._fields:
                _tokens(getattr(node, name, None), tokens, numbers)
        tokens.append(")")
    elif isinstance(node, list):
        tokens.append("[")
        for item in node:
            _tokens(item, tokens, numbers)
        tokens.append("]")
    else:
        tokens.append(repr(node))


@lru_cache(maxsize=4096)
def fingerprints(code: str) -> tuple[str, str]:
    """(structure_hash, shape_hash) of `code` (see module docstring); remembered for
    programs seen again. Code that does not parse is hashed as text."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return _digest("text:" + code), _digest("text:" + code)
    _drop_docstring(tree.body)
    tokens: list[str] = []
    numbers: list[int] = []
    _Canonical().visit(tree)
    _tokens(tree, tokens, numbers)
    structure = _digest("\x00".join(tokens))
    for at in numbers:
        tokens[at] = _NUMBER
    return structure, _digest("\x00".join(tokens))


def structure_hash(code: str) -> str:
    """sha256 of the program with comments, formatting, docstrings and local names
    normalised (see module docstring)."""
    return fingerprints(code)[0]


def shape_hash(code: str) -> str:
    """`structure_hash` with every numeric literal's value forgotten."""
    return fingerprints(code)[1]
