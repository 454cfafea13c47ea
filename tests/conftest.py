"""Suite-wide checks and shared fixtures.

The suite leaves no sandbox or candidate folders in the temp dir; `real_sglang` is
the folder of real SGLang expert statistics beside the project (never copied in).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from evolve import sandbox
from evolve.scratch import SCRATCH_PREFIXES, sweep_scratch

# Real SGLang recorder files, beside the project (never copied into it); see SOURCE.md there.
REAL_SGLANG = Path(__file__).resolve().parents[2] / "shared" / "traces" / "sglang-ep-statistics"


def _scratch_folders() -> set[str]:
    """The engine's folders (`<prefix><pid>-...`) in the temp dir."""
    root = Path(tempfile.gettempdir())
    return {p.name for prefix in SCRATCH_PREFIXES for p in root.glob(f"{prefix}*-*")
            if p.name[len(prefix):].split("-", 1)[0].isdigit()}


@pytest.fixture(scope="session", autouse=True)
def no_leftover_scratch_folders():
    """After the suite (and the sweep a run does at its end), no folder it made remains."""
    before = _scratch_folders()
    yield
    sandbox.shutdown_templates()
    for prefix in SCRATCH_PREFIXES:
        sweep_scratch(prefix)
    left = _scratch_folders() - before
    assert not left, f"the test suite left these folders in the temp dir: {sorted(left)}"


@pytest.fixture(scope="session")
def real_sglang() -> Path:
    """The folder of real SGLang expert statistics; the test is skipped without it."""
    if not sorted(REAL_SGLANG.glob("*.json")):
        pytest.skip(f"real SGLang traces not found in {REAL_SGLANG}")
    return REAL_SGLANG
