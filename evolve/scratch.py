"""Temporary folders that a killed process does not leave behind for good.

Each folder is named `<prefix><pid>-<random>` after the process that made it; making
a new one first removes those whose process is gone (a worker killed mid-evaluation
cannot clean up after itself).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psutil

# the engine's folders: sandboxes' scratch, candidates' code on remote workers, the
# local pool's marks, and a local dask cluster's files
SCRATCH_PREFIXES = ("sandbox-", "evolve-candidate-", "evolve-pool-", "evolve-dask-")


def make_scratch(prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary folder named after this process; folders of dead processes with the
    same prefix (left by a kill) are removed first."""
    sweep_scratch(prefix)
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-")


def sweep_scratch(prefix: str) -> None:
    """Remove `prefix<pid>-*` folders in the temp dir whose process is gone."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{prefix}*-*"):
        owner = folder.name[len(prefix):].split("-", 1)[0]
        if owner.isdigit() and not psutil.pid_exists(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)
