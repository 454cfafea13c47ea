"""Test candidates as the sandbox sees them: each one self-contained file.

A jailed candidate can read only its own program file, so a test candidate that
builds on the baseline calls `baseline_rebalance_experts` and is run with
initial.py's code in front of it, composed into a temporary file. One that uses
`honest_rebalance` (the baseline plus 80 ms of CPU work) or its burn also gets
tests/candidates/burns_80ms.py in front of it.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import initial

CANDIDATES = Path(__file__).resolve().parent / "candidates"
INITIAL = Path(initial.__file__).resolve()
BASELINE_NAME = "baseline_rebalance_experts"
HONEST_NAMES = ("honest_rebalance", "BURN_ROUNDS")  # what burns_80ms.py defines
HONEST = CANDIDATES / "burns_80ms.py"


def baseline_source() -> str:
    """initial.py with its entry point renamed to BASELINE_NAME."""
    return INITIAL.read_text().replace("def rebalance_experts(", f"def {BASELINE_NAME}(")


@contextlib.contextmanager
def candidate_file(name: str | Path) -> Iterator[Path]:
    """The program file for candidate `name` (in tests/candidates) or path `name`."""
    path = name if isinstance(name, Path) else CANDIDATES / f"{name}.py"
    text = path.read_text() if path.is_file() else ""
    honest = any(name in text for name in HONEST_NAMES) and path != HONEST
    parts = [baseline_source()] if BASELINE_NAME in text or honest else []
    if honest:
        parts.append(HONEST.read_text())
    if not parts:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="eplb-test-candidate-") as folder:
        composed = Path(folder) / path.name
        composed.write_text("\n\n".join([*parts, text]))
        yield composed


def printed_calls(output: str) -> list[dict]:
    """The records a recorder candidate printed as `CALL {json}` lines."""
    return [json.loads(line[5:]) for line in output.splitlines() if line.startswith("CALL ")]
