"""What the serving metrics (eplb/serving.py) cost an evaluation, and the reference table.

Default: evaluates `initial.py` with configs/task/eplb.yaml RUNS times (after one warm-up
evaluation; windows loaded beforehand) and times, by wrapping in this process, the
evaluator's serving model (eplb.evaluator._ServingCost: its set-up per scenario and its
per-window metrics). Prints the model's share of each evaluation's wall time, median
over runs. Target: < 10% (the issue's bound on the wall time the new metrics may add).

--table: also evaluates initial.py and every policies/*.py on the default synthetic trace
and, when ../shared/traces/sglang-ep-statistics/ is present, on SGLang's real DeepSeek-V3
expert statistics (8 aggregate files, one window each, decode files first, then prefill,
sorted by name; rebalance_interval 1, so each file's placement is scored on the next
file). The SGLang files are converted into a temporary .npy that is deleted afterwards.
On them, only ratios and migration seconds mean something: a "step" is a whole
benchmark run, so per-step times and migration shares do not. Takes several minutes.

Run from the project root:  python benchmarks/bench_serving.py [--table]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eplb import evaluator  # noqa: E402
from eplb.config import load_task_config  # noqa: E402

TARGET_PERCENT = 10.0
RUNS = 3
SGLANG = ROOT.parent / "shared" / "traces" / "sglang-ep-statistics"
COLUMNS = ("balancedness_gpu", "throughput_vs_ideal", "serving_throughput_vs_ideal",
           "migration_seconds", "time_ms", "migration")


def timed_evaluations() -> None:
    """The serving model's share of each evaluation's wall time."""
    spent = [0.0]
    cost = evaluator._ServingCost
    originals = {name: getattr(cost, name) for name in ("__init__", "window")}

    def wrap(func):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        return wrapper

    for name, func in originals.items():
        setattr(cost, name, wrap(func))
    task = load_task_config()
    evaluator.load_windows(task)
    shares = []
    try:
        for run in range(RUNS + 1):
            spent[0] = 0.0
            started = time.perf_counter()
            result = evaluator.evaluate_program(ROOT / "initial.py", task)
            wall = time.perf_counter() - started
            assert result["correct"], result["error"]
            if run:
                shares.append((100 * spent[0] / wall, spent[0], wall))
    finally:
        for name, func in originals.items():
            setattr(cost, name, func)
    share, model_s, wall = sorted(shares)[len(shares) // 2]
    verdict = "PASS" if share < TARGET_PERCENT else "FAIL"
    print(f"SUMMARY serving metrics: {share:.2f}% of an evaluation's wall time (median of "
          f"{RUNS}; {1000 * model_s:.0f} ms of {wall:.2f} s; target < {TARGET_PERCENT:.0f}%) "
          f"{verdict}")


def sglang_trace(folder: Path) -> np.ndarray:
    """The SGLang statistics as (files, 58, 256): decode files, then prefill, by name."""
    files = sorted(folder.glob("decode_*.json")) + sorted(folder.glob("prefill_*.json"))
    return np.stack([np.asarray(json.loads(f.read_text())["logical_count"])[3:].astype(
        np.int64) for f in files])


def table(workload: str | None, overrides: list[str], title: str) -> None:
    """One row per reference program on a workload."""
    task = load_task_config(None, overrides)
    programs = [ROOT / "initial.py", *sorted((ROOT / "policies").glob("*.py"))]
    print(f"\n{title}\n{'program':<28}" + "".join(f"{c:>29}" for c in COLUMNS))
    for path in programs:
        metrics = evaluator.evaluate_program(path, task, workload)["metrics"]
        print(f"{path.name:<28}" + "".join(f"{metrics[c]:>29.4f}" for c in COLUMNS))


def main() -> None:
    timed_evaluations()
    if "--table" not in sys.argv[1:]:
        return
    table(None, [], "default synthetic trace (means over the three scenarios)")
    if SGLANG.is_dir():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "sglang.npy"
            np.save(path, sglang_trace(SGLANG))
            table(str(path), ["rebalance_interval=1"],
                  "SGLang DeepSeek-V3 statistics (8 files; ratios and migration seconds only)")
    else:
        print(f"\n{SGLANG} not found: SGLang table skipped")


if __name__ == "__main__":
    main()
