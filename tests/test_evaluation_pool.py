"""The evaluation pools' watchdog: its clock starts when a worker starts an evaluation,
not when it is submitted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from evo_helpers import wait_for

from evolve.config import EvaluationSettings
from evolve.evaluation import make_pool


class GateTask:
    """Evaluations of programs named `hold*` wait for the file `options["gate"]`."""

    def __init__(self, options: dict):
        self.gate = Path(options["gate"])

    def prepare(self) -> None:
        return None

    def evaluate(self, program_path: str, results_dir=None, prepared=None) -> dict:
        deadline = time.monotonic() + 60
        while Path(program_path).name.startswith("hold") and not self.gate.exists() \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        return {"correct": True, "error": None, "feedback": "",
                "metrics": {"name": Path(program_path).name}}


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_waiting_for_a_worker_is_not_late(tmp_path, backend):
    gate = tmp_path / "gate"
    for name in ("hold.py", "queued.py"):
        (tmp_path / name).write_text("")
    settings = EvaluationSettings(n_jobs=1, watchdog_s=0.5, backend=backend)
    pool = make_pool(settings, "test_evaluation_pool:GateTask", {"gate": str(gate)})
    try:
        held = pool.submit(str(tmp_path / "hold.py"))
        queued = pool.submit(str(tmp_path / "queued.py"))  # waits: the only worker is busy
        assert wait_for(pool.overdue, timeout=60)
        assert pool.overdue() == [held]  # the queued one is older than 0.5 s, but not late
        gate.touch()
        assert queued.result(timeout=60)["metrics"] == {"name": "queued.py"}
        assert held.result(timeout=60)["correct"]
        assert pool.overdue() == []
    finally:
        pool.shutdown()
    if backend == "local":
        assert not Path(pool._marks.name).exists()  # the start marks are cleaned up
