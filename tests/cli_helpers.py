"""Running `python evaluate.py` as a subprocess in tests, on a small task YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SMALL_TASK = {
    "name": "eplb-small",
    "workload": "synthetic",
    "rebalance_interval": 100,
    "synthetic": {"steps": 300, "layers": 3, "experts": 16, "seed": 1},
    "scenarios": [{"name": "tiny", "num_replicas": 24, "num_groups": 4, "num_nodes": 2,
                   "num_gpus": 4}],
    "timing": {"warmup": 0, "repeats": 1},
    "limits": {"timeout_s": 30, "memory_mb": 2048},
}


def write_task(folder: Path, task: dict = SMALL_TASK) -> Path:
    """The task written to folder/task.yaml, for `--task`."""
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def cli(*args) -> subprocess.CompletedProcess:
    """`python evaluate.py ARGS` from the project root, output captured."""
    return subprocess.run([sys.executable, "evaluate.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
