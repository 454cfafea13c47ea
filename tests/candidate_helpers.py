"""Test candidates as the sandbox sees them: each one self-contained file.

A jailed candidate can read only its own program file, so a test candidate that
builds on the baseline calls `baseline_rebalance_experts` and is run with
initial.py's code in front of it, composed into a temporary file.
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


def baseline_source() -> str:
    """initial.py with its entry point renamed to BASELINE_NAME."""
    return INITIAL.read_text().replace("def rebalance_experts(", f"def {BASELINE_NAME}(")


@contextlib.contextmanager
def candidate_file(name: str | Path) -> Iterator[Path]:
    """The program file for candidate `name` (in tests/candidates) or path `name`."""
    path = name if isinstance(name, Path) else CANDIDATES / f"{name}.py"
    if not path.is_file() or BASELINE_NAME not in path.read_text():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="eplb-test-candidate-") as folder:
        composed = Path(folder) / path.name
        composed.write_text(f"{baseline_source()}\n\n{path.read_text()}")
        yield composed


def printed_calls(output: str) -> list[dict]:
    """The records a recorder candidate printed as `CALL {json}` lines."""
    return [json.loads(line[5:]) for line in output.splitlines() if line.startswith("CALL ")]
