"""Scratch folders: named after their process, swept once that process is gone."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from evolve.scratch import make_scratch, sweep_scratch


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_folders_of_dead_processes_are_swept_and_live_ones_kept():
    dead = Path(tempfile.gettempdir()) / f"sandbox-test-{_dead_pid()}-left-by-a-kill"
    dead.mkdir()
    (dead / "output.log").write_text("the worker was killed here")
    with make_scratch("sandbox-test-") as live:
        assert Path(live).name.startswith(f"sandbox-test-{os.getpid()}-")
        assert not dead.exists()  # swept when the new folder was made
        sweep_scratch("sandbox-test-")
        assert Path(live).is_dir()  # its process (this one) is alive
    assert not Path(live).exists()
