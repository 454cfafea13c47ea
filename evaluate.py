"""Evaluate one EPLB candidate program, compare several, or export / score expert maps.

    python evaluate.py --program_path initial.py [--workload synthetic|PATH]
                       [--results_dir DIR] [--task configs/task/eplb.yaml] [--set key=value ...]
    python evaluate.py --program_path P --export_map eplb.json [--map_window K] [--scenario S]
                       [--map_format vllm-ascend|sglang|vllm-policy] [--dense_layers N]
    python evaluate.py --expert_map eplb.json [--scenario S] [--results_dir DIR]
    python evaluate.py --compare P1 P2 ... [--results_dir DIR]

--export_map writes the candidate's placement for window K (default: the last window of
the trace) for one scenario (default: the task's first) as a vLLM-Ascend expert map, or
with --map_format sglang as SGLang's --init-expert-location JSON (--dense_layers N rows
in front for the model's dense layers). A placement with an expert twice on one device is
repaired first (slot swaps between devices, reported), or refused when it cannot be.
--map_format vllm-policy writes instead a self-contained Python file with a vLLM EPLB
policy class running the program (no placement is computed).
--expert_map scores a recorded static map: the same placement on every window.
--compare evaluates each program on the same windows and prints one row per program.

Exit status: 0 valid candidate (or map, or comparison run), 1 invalid or failing
candidate, 2 usage or input error (bad flags, config, trace or map). Also importable:
`evaluate(program_path, ...)`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from eplb import expert_map, exports
from eplb.colocation import RepairError
from eplb.config import TaskConfig, load_task_config
from eplb.evaluator import CandidateError, evaluate_program, load_windows
from eplb.placement import Scenario
from eplb.report import summary_text
from eplb.workload import WorkloadError
from evolve.atomic import write_json
from evolve.config import ConfigError
from evolve.sandbox import SandboxError, isolation_warning

COMPARE_COLUMNS = ("balancedness_gpu", "balancedness_slot", "time_ms", "combined_score")
OPTIONAL_COLUMNS = ("rebalances", "migration", "migration_slots", "migration_bytes",
                    "locality_nodes_per_group")
# the step-time model (eplb/serving.py); the gain is against the task's initial program
# when it is one of the programs compared
SERVING_COLUMNS = ("throughput_vs_ideal", "serving_throughput_vs_ideal",
                   "internode_transfers_per_token", "migration_seconds",
                   "throughput_gain_vs_baseline")


def evaluate(program_path: str, workload: str | None = None, results_dir: str | None = None,
             task_path: str | None = None, overrides: list[str] = ()) -> dict:
    """Evaluate a program with the task config (and overrides); see eplb.evaluator."""
    task = load_task_config(task_path, overrides)
    return evaluate_program(program_path, task, workload, results_dir)


def pick_scenario(task: TaskConfig, name: str | None) -> Scenario:
    """The named scenario of the task (default: the first)."""
    if name is None:
        return task.scenarios[0]
    for scenario in task.scenarios:
        if scenario.name == name:
            return scenario
    raise ValueError(f"unknown scenario {name!r}; the task has "
                     f"{', '.join(s.name for s in task.scenarios)}")


def export_map(args: argparse.Namespace, task: TaskConfig) -> int:
    """Run the candidate on one window and write its placement as an expert map."""
    if args.map_format == "vllm-policy":
        return export_policy(args)
    scenario = pick_scenario(task, args.scenario)
    workload, windows = load_windows(task, args.workload)
    problems = scenario.problems(windows.shape[2])
    if problems:
        raise ValueError("; ".join(problems))
    count = len(windows)
    window = count - 1 if args.map_window is None else args.map_window
    if not -count <= window < count:
        raise ValueError(f"--map_window {window}: the trace has {count} windows (0..{count - 1})")
    window %= count
    try:
        phy2log = expert_map.candidate_placement(args.program_path, task, windows, window,
                                                 scenario)
    except (CandidateError, SandboxError) as exc:
        print(f"candidate failed: {exc}", file=sys.stderr)
        return 1
    try:
        phy2log, repaired = exports.repair_for_export(phy2log, windows[window], scenario)
    except RepairError as exc:
        print(f"cannot export a loadable map: {exc}", file=sys.stderr)
        return 1
    if args.map_format == "sglang":
        exports.save_sglang(args.export_map, phy2log, args.dense_layers)
    else:
        expert_map.save_map(args.export_map,
                            expert_map.placement_to_map(phy2log, scenario.num_gpus))
    same = expert_map.score_static(phy2log, windows[window:window + 1], scenario)
    print(f"wrote {args.export_map} ({args.map_format}): placement of {args.program_path} for "
          f"window {window} of {workload}, scenario {scenario.name} ({phy2log.shape[0]} layers"
          f"{f' after {args.dense_layers} dense ones' if args.dense_layers else ''}, "
          f"{scenario.num_gpus} devices x {phy2log.shape[1] // scenario.num_gpus} slots); "
          f"balancedness_gpu on that window {same['balancedness_gpu']:.4f}\n"
          f"{exports.repair_text(repaired)}")
    return 0


def export_policy(args: argparse.Namespace) -> int:
    """Write the program as a self-contained vLLM EPLB policy file."""
    try:
        exports.save_vllm_policy(args.export_map, args.program_path)
    except SyntaxError as exc:
        print(f"candidate failed: {args.program_path} does not compile: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.export_map} (vllm-policy): class EvolvedEplbPolicy running "
          f"{args.program_path}'s rebalance_experts")
    return 0


def score_map(args: argparse.Namespace, task: TaskConfig) -> int:
    """Score a recorded static expert map on every window of the trace."""
    data = expert_map.load_map(args.expert_map)
    scenario = pick_scenario(task, args.scenario)
    workload, windows = load_windows(task, args.workload)
    phy2log = expert_map.map_to_placement(data, windows.shape[2], scenario)
    metrics = expert_map.score_static(phy2log, windows, scenario)
    metrics.update(expert_map=str(args.expert_map), workload=workload,
                   windows_scored=len(windows),
                   scenario=asdict(expert_map.map_scenario(scenario, phy2log)))
    if args.results_dir:
        write_json(Path(args.results_dir) / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2) if args.json else map_summary(metrics))
    return 0


def map_summary(metrics: dict) -> str:
    """Per-window and mean balancedness of a static map."""
    s = metrics["scenario"]
    lines = [f"expert map: {metrics['expert_map']}  workload: {metrics['workload']}  "
             f"scenario: {s['name']} ({s['num_gpus']} GPUs x "
             f"{s['num_replicas'] // s['num_gpus']} slots, {s['num_nodes']} nodes)",
             "the same placement on every window (static map, no rebalancing)", "",
             f"{'window':>8}{'bal_gpu':>10}{'bal_slot':>10}{'bal_node':>10}"]
    rows = [*metrics["per_window"], {"window": "mean", **metrics}]
    lines += [f"{r['window']:>8}{r['balancedness_gpu']:>10.4f}{r['balancedness_slot']:>10.4f}"
              f"{r['balancedness_node']:>10.4f}" for r in rows]
    return "\n".join(lines)


def compare(args: argparse.Namespace, task: TaskConfig) -> int:
    """Evaluate each program on the same windows, one after the other; print a table."""
    rows = []
    for path in args.compare:
        result = evaluate_program(path, task, args.workload)
        row = {"program": path, "error": None if result["correct"] else result["error"]}
        if result["correct"]:
            row.update({k: result["metrics"][k] for k in
                        COMPARE_COLUMNS + OPTIONAL_COLUMNS + SERVING_COLUMNS
                        if k in result["metrics"]})
        rows.append(row)
    add_baseline_gain(rows, task)
    if args.results_dir:
        write_json(Path(args.results_dir) / "compare.json", rows)
    print(json.dumps(rows, indent=2) if args.json else compare_table(rows))
    return 0


def add_baseline_gain(rows: list[dict], task: TaskConfig) -> None:
    """throughput_gain_vs_baseline = a program's serving throughput (migration included,
    relative to the ideal) / the task's initial program's - 1, when that program is
    among the rows and valid."""
    initial = task.resolve(task.engine.get("initial_program", "initial.py")).resolve()
    base = next((r for r in rows if r["error"] is None and Path(r["program"]).resolve()
                 == initial and "serving_throughput_vs_ideal" in r), None)
    if base is None:
        return
    for row in rows:
        if row["error"] is None and "serving_throughput_vs_ideal" in row:
            row["throughput_gain_vs_baseline"] = (row["serving_throughput_vs_ideal"]
                                                  / base["serving_throughput_vs_ideal"] - 1)


def _cell(key: str, value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if key == "time_ms":
        return f"{value:.2f}"
    if key == "throughput_gain_vs_baseline":
        return f"{value:+.4f}"
    return f"{value:.4f}" if key in COMPARE_COLUMNS else f"{value:.6g}"


def compare_table(rows: list[dict]) -> str:
    """One row per program: the fixed columns, optional ones that exist, or the error."""
    columns = [*COMPARE_COLUMNS, *(k for k in OPTIONAL_COLUMNS + SERVING_COLUMNS
                                   if any(k in r for r in rows))]
    cells = [[r["program"], *(_cell(k, r.get(k)) for k in columns)] for r in rows]
    widths = [max(len(x) for x in column) for column in
              zip(["program", *columns], *cells, strict=True)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in
                       enumerate(zip(["program", *columns], widths, strict=True)))]
    for row, cell in zip(rows, cells, strict=True):
        if row["error"] is not None:
            first = row["error"].strip().splitlines()[0] if row["error"].strip() else "?"
            lines.append(f"{row['program'].ljust(widths[0])}  FAILED: {first}")
        else:
            lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(cell, widths, strict=True))))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--program_path", help="candidate program (.py)")
    parser.add_argument("--export_map", metavar="JSON",
                        help="write the candidate's placement as an expert map (no scoring)")
    parser.add_argument("--map_window", type=int, metavar="K",
                        help="with --export_map: the window to place for (default: the last)")
    parser.add_argument("--map_format", choices=("vllm-ascend", "sglang", "vllm-policy"),
                        help="with --export_map: the format written (default vllm-ascend)")
    parser.add_argument("--dense_layers", type=int, metavar="N",
                        help="with --map_format sglang: rows put first for the model's dense "
                             "layers (3 for DeepSeek-V3/R1; default 0)")
    parser.add_argument("--expert_map", metavar="JSON",
                        help="score a static expert map on every window (no program needed)")
    parser.add_argument("--compare", nargs="+", metavar="PROGRAM",
                        help="evaluate several programs and print them side by side")
    parser.add_argument("--scenario", metavar="NAME",
                        help="scenario for --export_map / --expert_map (default: the first)")
    parser.add_argument("--workload", help="'synthetic' or a trace: expert-load.json, .npy, .pt")
    parser.add_argument("--results_dir", help="where to write metrics.json and correct.json")
    parser.add_argument("--task", help="task config YAML (default configs/task/eplb.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a task config value, e.g. --set rebalance_interval=50")
    parser.add_argument("--json", action="store_true", help="print metrics as JSON")
    args = parser.parse_args(argv)
    modes = [flag for flag in ("program_path", "expert_map", "compare") if getattr(args, flag)]
    if args.export_map and not args.program_path:
        parser.error("--export_map needs --program_path")
    if len(modes) != 1:
        parser.error("give exactly one of --program_path, --expert_map or --compare")
    if args.map_window is not None and not args.export_map:
        parser.error("--map_window needs --export_map")
    if args.map_format and not args.export_map:
        parser.error("--map_format needs --export_map")
    if args.dense_layers is not None and args.map_format != "sglang":
        parser.error("--dense_layers needs --map_format sglang")
    if args.dense_layers is not None and args.dense_layers < 0:
        parser.error("--dense_layers must be >= 0")
    args.map_format = args.map_format or "vllm-ascend"
    args.dense_layers = args.dense_layers or 0
    if args.scenario and not (args.export_map or args.expert_map):
        parser.error("--scenario needs --export_map or --expert_map")
    for path in [] if args.expert_map else args.compare or [args.program_path]:
        if not Path(path).is_file():
            print(f"error: program not found: {path}", file=sys.stderr)
            return 2
    try:
        task = load_task_config(args.task, args.set)
        if not args.expert_map and (warning := isolation_warning(task.limits)):
            print(warning, file=sys.stderr)
        if args.expert_map:
            return score_map(args, task)
        if args.export_map:
            return export_map(args, task)
        if args.compare:
            return compare(args, task)
        result = evaluate_program(args.program_path, task, args.workload, args.results_dir)
    except (ConfigError, WorkloadError, ValueError, SandboxError) as exc:  # MapError: ValueError
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
