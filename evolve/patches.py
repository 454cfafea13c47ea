"""Turn an LLM reply into a new candidate program.

Only the code between `# EVOLVE-BLOCK-START` and `# EVOLVE-BLOCK-END` may change.
Every failure raises `PatchError`, whose message is shown to the model in the next
prompt, so messages say what was wrong and what to do instead.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import re
import tokenize

START_MARKER = "# EVOLVE-BLOCK-START"
END_MARKER = "# EVOLVE-BLOCK-END"

_SEARCH_RE = re.compile(r"^\s*<{5,}\s*SEARCH\s*$")
_DIVIDER_RE = re.compile(r"^\s*={5,}\s*$")
_REPLACE_RE = re.compile(r"^\s*>{5,}\s*REPLACE\s*$")
_FENCE_RE = re.compile(r"^[ \t]*```[^\n`]*\n(.*?)^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)
_OUTSIDE = "edits outside the EVOLVE-BLOCK are not allowed"


class PatchError(ValueError):
    """A reply could not be turned into a program; the message is meant for the LLM."""


def _is_marker(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(START_MARKER) or stripped.startswith(END_MARKER)


def split_evolve_block(code: str) -> tuple[str, str, str]:
    """Split code into (head incl. start marker line, block body, tail from end marker line)."""
    lines = code.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip().startswith(START_MARKER)]
    ends = [i for i, line in enumerate(lines) if line.strip().startswith(END_MARKER)]
    if len(starts) != 1 or len(ends) != 1:
        raise PatchError(
            f"the program must contain exactly one '{START_MARKER}' line and one "
            f"'{END_MARKER}' line; found {len(starts)} and {len(ends)}"
        )
    s, e = starts[0], ends[0]
    if e < s:
        raise PatchError(
            f"'{END_MARKER}' (line {e + 1}) comes before '{START_MARKER}' "
            f"(line {s + 1}); the start marker must come first"
        )
    return "".join(lines[: s + 1]), "".join(lines[s + 1 : e]), "".join(lines[e:])


# ---------------------------------------------------------------- diff parsing


def _parse_blocks(reply: str) -> list[tuple[str, str]]:
    """Return the (search, replace) pairs of a reply, in order."""
    blocks: list[tuple[str, str]] = []
    state, search, replace = None, [], []
    for line in reply.splitlines():
        if state is None:
            if _SEARCH_RE.match(line):
                state, search, replace = "search", [], []
        elif state == "search":
            if _DIVIDER_RE.match(line):
                state = "replace"
            elif _SEARCH_RE.match(line) or _REPLACE_RE.match(line):
                raise PatchError(
                    f"SEARCH/REPLACE block {len(blocks) + 1} has no '=======' "
                    "line between its SEARCH and REPLACE parts"
                )
            else:
                search.append(line)
        elif _REPLACE_RE.match(line):
            blocks.append(("\n".join(search), "\n".join(replace)))
            state = None
        else:
            replace.append(line)
    if state is not None:
        raise PatchError(
            f"SEARCH/REPLACE block {len(blocks) + 1} is not closed; end every "
            "block with a '>>>>>>> REPLACE' line"
        )
    if not blocks:
        raise PatchError("reply contains no SEARCH/REPLACE block")
    return blocks


# ---------------------------------------------------------------- matching


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _shift(window: list[str], search: list[str]) -> int | None:
    """Uniform indentation shift that makes `search` equal `window` (modulo trailing spaces)."""
    shift = None
    for w_line, s_line in zip(window, search, strict=True):
        w, s = w_line.rstrip(), s_line.rstrip()
        if not w and not s:
            continue
        if not w or not s or w.lstrip() != s.lstrip():
            return None
        d = _indent(w) - _indent(s)
        if shift is None:
            shift = d
        elif d != shift:
            return None
    return shift or 0


def _find(lines: list[str], search: list[str]) -> list[tuple[int, int, int]]:
    """Matches as (start, end, indent shift): exact, then whitespace-tolerant, then blank-blind."""
    n = len(search)
    windows = range(len(lines) - n + 1)
    found = [(i, i + n, 0) for i in windows if lines[i : i + n] == search]
    if found:
        return found
    found = [(i, i + n, d) for i in windows if (d := _shift(lines[i : i + n], search)) is not None]
    if found:
        return found
    dense = [line for line in search if line.strip()]
    idx = [i for i, line in enumerate(lines) if line.strip()]
    m = len(dense)
    for j in range(len(idx) - m + 1):
        d = _shift([lines[idx[j + k]] for k in range(m)], dense)
        if d is not None:
            found.append((idx[j], idx[j + m - 1] + 1, d))
    return found


def _reindent(lines: list[str], shift: int) -> list[str]:
    out = []
    for line in lines:
        if not line.strip():
            out.append("")
        elif shift >= 0:
            out.append(" " * shift + line)
        else:
            out.append(line[min(-shift, _indent(line)) :])
    return out


def _closest(lines: list[str], search: list[str], first_line: int) -> str:
    """Describe the window of `lines` most similar to `search` (1-based file line numbers)."""
    n = max(1, min(len(search), len(lines)))
    target = "\n".join(s.strip() for s in search)
    best, best_i = -1.0, 0
    for i in range(len(lines) - n + 1):
        window = "\n".join(s.strip() for s in lines[i : i + n])
        ratio = difflib.SequenceMatcher(None, target, window).ratio()
        if ratio > best:
            best, best_i = ratio, i
    if best < 0:
        return "The EVOLVE block is empty."
    shown = lines[best_i : best_i + min(n, 12)]
    a = first_line + best_i
    listing = "\n".join(f"{a + k:5d} | {line}" for k, line in enumerate(shown))
    where = f"line {a} is" if n == 1 else f"lines {a}-{a + n - 1} are"
    return f"The closest {where} (similarity {best:.2f}):\n{listing}"


def _apply_one(code: str, search_text: str, replace_text: str, label: str) -> str:
    search = search_text.splitlines()
    replace = replace_text.splitlines()
    if not any(line.strip() for line in search):
        raise PatchError(f"{label}: the SEARCH part is empty; quote the exact lines to replace")
    if any(_is_marker(line) for line in search + replace):
        raise PatchError(
            f"{label}: {_OUTSIDE}; do not include or change the EVOLVE-BLOCK marker lines"
        )
    head, body, tail = split_evolve_block(code)
    lines = body.splitlines()
    matches = _find(lines, search)
    if len(matches) > 1:
        raise PatchError(
            f"{label}: the SEARCH text matches {len(matches)} times inside the "
            "EVOLVE block; include more surrounding lines so it matches exactly once"
        )
    if not matches:
        if _find(code.splitlines(), search):
            raise PatchError(
                f"{label}: the SEARCH text only matches code outside the block; {_OUTSIDE}"
            )
        first_line = head.count("\n") + 1
        raise PatchError(
            f"{label}: the SEARCH text does not match any lines of the EVOLVE block "
            f"(even ignoring whitespace). {_closest(lines, search, first_line)}\n"
            "Copy SEARCH lines verbatim from the current program."
        )
    start, end, shift = matches[0]
    lines[start:end] = _reindent(replace, shift)
    new_body = "".join(line + "\n" for line in lines)
    return head + new_body + tail


def apply_diff(code: str, reply: str) -> str:
    """Apply the SEARCH/REPLACE blocks of `reply` to the EVOLVE block of `code`, in order.

    Matching is exact first, then tolerant of trailing whitespace and a uniform
    indentation shift (the replacement is re-indented by the same shift), then blind
    to blank-line differences. Each SEARCH must match exactly once inside the block.
    """
    split_evolve_block(code)
    blocks = _parse_blocks(reply)
    new = code
    for k, (search, replace) in enumerate(blocks, 1):
        new = _apply_one(new, search, replace, f"SEARCH/REPLACE block {k} of {len(blocks)}")
    if new == code:
        raise PatchError("patch changes nothing")
    return new


# ---------------------------------------------------------------- full rewrite


def apply_full(code: str, reply: str) -> str:
    """Replace the EVOLVE block of `code` with the largest fenced code block of `reply`.

    Ties go to the last block. If that block contains the markers, only the text between
    them is used, otherwise the whole block is the new body. Anything outside the markers
    in the reply is ignored: the frozen parts always come from the parent `code`.
    """
    head, body, tail = split_evolve_block(code)
    blocks = _FENCE_RE.findall(reply)
    if not blocks:
        hint = " (a ``` fence is never closed; was the reply cut off?)" if "```" in reply else ""
        raise PatchError(
            f"reply contains no code block{hint}; return the whole EVOLVE-BLOCK "
            "in one ```python fenced block"
        )
    chosen = max(reversed(blocks), key=len)
    if any(_is_marker(line) for line in chosen.splitlines()):
        _, chosen, _ = split_evolve_block(chosen)
    new_body = chosen.rstrip() + "\n" if chosen.strip() else ""
    if new_body.strip() == body.strip():
        raise PatchError("patch changes nothing")
    return head + new_body + tail


# ---------------------------------------------------------------- dispatch


def apply_reply(patch_type: str, parent_code: str, reply: str) -> str:
    """Apply a reply of the given patch type ("diff", "full", "cross"); check it compiles."""
    if patch_type == "diff":
        code = apply_diff(parent_code, reply)
    elif patch_type in ("full", "cross"):
        code = apply_full(parent_code, reply)
    else:
        raise ValueError(f"unknown patch type {patch_type!r}")
    try:
        compile(code, "<candidate>", "exec")
    except SyntaxError as exc:
        text = (exc.text or "").rstrip()
        where = f"line {exc.lineno}: {exc.msg}" + (f"\n    {text}" if text else "")
        raise PatchError(f"the patched program does not compile: SyntaxError at {where}") from exc
    except ValueError as exc:
        raise PatchError(f"the patched program does not compile: {exc}") from exc
    return code


# ---------------------------------------------------------------- duplicates


def normalize_code(code: str) -> str:
    """Code without comments, blank lines and trailing whitespace (docstrings are kept)."""
    lines = code.splitlines()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        kept = [line for line in lines if not line.lstrip().startswith("#")]
    else:
        for tok in tokens:
            if tok.type == tokenize.COMMENT:
                row, col = tok.start
                lines[row - 1] = lines[row - 1][:col]
        kept = lines
    return "\n".join(line.rstrip() for line in kept if line.strip())


def code_hash(code: str) -> str:
    """sha256 hex digest of `normalize_code(code)`."""
    return hashlib.sha256(normalize_code(code).encode()).hexdigest()
