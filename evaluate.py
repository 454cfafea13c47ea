"""Evaluate one EPLB candidate program.

    python evaluate.py --program_path initial.py [--workload synthetic|PATH]
                       [--results_dir DIR] [--task configs/task/eplb.yaml] [--set key=value ...]

Exit status: 0 valid candidate, 1 invalid or failing candidate, 2 usage error
(bad flags, config or trace). Also importable: `evaluate(program_path, ...)`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eplb.config import load_task_config
from eplb.evaluator import evaluate_program
from eplb.report import summary_text
from eplb.workload import WorkloadError
from evolve.config import ConfigError


def evaluate(program_path: str, workload: str | None = None, results_dir: str | None = None,
             task_path: str | None = None, overrides: list[str] = ()) -> dict:
    """Evaluate a program with the task config (and overrides); see eplb.evaluator."""
    task = load_task_config(task_path, overrides)
    return evaluate_program(program_path, task, workload, results_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--program_path", required=True, help="candidate program (.py)")
    parser.add_argument("--workload", help="'synthetic' or a trace: expert-load.json, .npy, .pt")
    parser.add_argument("--results_dir", help="where to write metrics.json and correct.json")
    parser.add_argument("--task", help="task config YAML (default configs/task/eplb.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a task config value, e.g. --set rebalance_interval=50")
    parser.add_argument("--json", action="store_true", help="print metrics as JSON")
    args = parser.parse_args(argv)
    if not Path(args.program_path).is_file():
        print(f"error: program not found: {args.program_path}", file=sys.stderr)
        return 2
    try:
        result = evaluate(args.program_path, args.workload, args.results_dir, args.task,
                          args.set)
    except (ConfigError, WorkloadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not result["correct"]:
        print(f"candidate failed: {result['error']}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result["metrics"], indent=2))
    else:
        print(summary_text(result["metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
