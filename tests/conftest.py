"""Fixtures shared by several test files."""

from pathlib import Path

import pytest

# Real SGLang recorder files, beside the project (never copied into it); see SOURCE.md there.
REAL_SGLANG = Path(__file__).resolve().parents[2] / "shared" / "traces" / "sglang-ep-statistics"


@pytest.fixture(scope="session")
def real_sglang() -> Path:
    """The folder of real SGLang expert statistics; the test is skipped without it."""
    if not sorted(REAL_SGLANG.glob("*.json")):
        pytest.skip(f"real SGLang traces not found in {REAL_SGLANG}")
    return REAL_SGLANG
