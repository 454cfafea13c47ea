"""The one-line idea of a reply: what the model says it tried, kept as data.

The answer format asks for a first line `Idea: ...`. Without one, the idea is the first
sentence of the reply's prose, outside code blocks and SEARCH/REPLACE edits.
"""

from __future__ import annotations

import re

MAX_IDEA_CHARS = 200

_IDEA_LINE = re.compile(r"^[\s>*_#-]*idea[*_]*\s*[:\-]\s*(.+)$", re.IGNORECASE)
_FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)
_EDIT = re.compile(r"^\s*<{5,}\s*SEARCH.*?^\s*>{5,}\s*REPLACE\s*$", re.MULTILINE | re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _clip(text: str) -> str:
    text = " ".join(text.replace("*", " ").replace("`", "").split()).strip(" -:")
    return text if len(text) <= MAX_IDEA_CHARS else text[: MAX_IDEA_CHARS - 3].rstrip() + "..."


def parse_idea(reply: str | None) -> str:
    """The idea stated by `reply` (see module docstring); "" when it says nothing."""
    if not reply:
        return ""
    prose = _EDIT.sub("\n", _FENCE.sub("\n", reply))
    for line in prose.splitlines():
        match = _IDEA_LINE.match(line)
        if match and match.group(1).strip():
            return _clip(match.group(1))
    paragraph = prose.strip().split("\n\n", 1)[0] if prose.strip() else ""
    return _clip(_SENTENCE_END.split(paragraph.strip(), maxsplit=1)[0]) if paragraph else ""
