"""Suite-wide checks and shared fixtures.

The suite leaves no sandbox or candidate folders in the temp dir; `real_sglang` is
the folder of real SGLang expert statistics beside the project (never copied in).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psutil
import pytest

from evolve import sandbox
from evolve.scratch import SCRATCH_PREFIXES, sweep_scratch

# Real SGLang recorder files, beside the project (never copied into it); see SOURCE.md there.
REAL_SGLANG = Path(__file__).resolve().parents[2] / "shared" / "traces" / "sglang-ep-statistics"


def _scratch_folders() -> set[str]:
    """The engine's folders (`<prefix><pid>-...`) in the temp dir made by this test
    process or its descendants (other test runs on the machine may have their own)."""
    ours = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    root = Path(tempfile.gettempdir())
    found = set()
    for prefix in SCRATCH_PREFIXES:
        for folder in root.glob(f"{prefix}*-*"):
            owner = folder.name[len(prefix):].split("-", 1)[0]
            if owner.isdigit() and (int(owner) in ours or not psutil.pid_exists(int(owner))):
                found.add(folder.name)
    return found


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
