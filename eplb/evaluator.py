"""The evaluation protocol: run a candidate window by window, check, score, report.

For each scenario and each window i (but the last), the candidate, in its
sandbox, computes a placement from window i alone; the placement is checked
and scored on window i+1 (predictive), and also on window i (what a perfect
forecast would give) and against a no-replication layout. Only the candidate's
`rebalance_experts` call is timed, inside the sandbox; checking and scoring
happen here, untimed, while the candidate waits for its next window.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from eplb import placement, synthetic
from eplb.config import TaskConfig, load_task_config, task_config_from_dict
from eplb.placement import Scenario
from eplb.workload import load_trace, make_windows
from evolve import channel
from evolve.sandbox import Sandbox, SandboxError

RUNNER = Path(__file__).with_name("candidate_runner.py")
TIMING_SLACK_S = 0.05  # untimed work per exchange (copies, transfer) is a few ms
TIMING_SLACK_SHARE = 0.25
_WINDOW_CACHE: dict[tuple, tuple[str, np.ndarray]] = {}


class CandidateError(RuntimeError):
    """The candidate failed or produced an invalid placement; the message says how."""


def load_windows(task: TaskConfig, workload: str | None = None) -> tuple[str, np.ndarray]:
    """The task's windows (windows, layers, experts) and a name for them; cached per process."""
    spec = workload or task.workload
    if spec == "synthetic":
        key = ("synthetic", task.synthetic, task.rebalance_interval, task.max_windows)
    else:
        path = Path(spec) if Path(spec).is_absolute() or Path(spec).exists() \
            else task.resolve(spec)
        stat = path.stat() if path.is_file() else None
        key = (str(path), stat and (stat.st_size, stat.st_mtime_ns),
               task.rebalance_interval, task.max_windows)
    if key not in _WINDOW_CACHE:
        if spec == "synthetic":
            name, steps = f"synthetic(seed={task.synthetic.seed})", synthetic.generate(
                task.synthetic)
        else:
            name, steps = path.name, load_trace(path)
        windows = make_windows(steps, task.rebalance_interval, task.max_windows)
        _WINDOW_CACHE.clear()
        _WINDOW_CACHE[key] = (name, windows)
    return _WINDOW_CACHE[key]


def _run_scenario(box: Sandbox, windows: np.ndarray, scenario: Scenario,
                  task: TaskConfig) -> list[dict]:
    """Ask the candidate for one placement per window; check and score each."""
    layers, experts = windows.shape[1:]
    request = {"op": "place", "num_replicas": scenario.num_replicas,
               "num_groups": scenario.num_groups, "num_nodes": scenario.num_nodes,
               "num_gpus": scenario.num_gpus, "repeats": task.timing.repeats}
    records, previous = [], None
    loads = windows.astype(np.float64)
    plain = placement.no_replication_gpu(loads[1:], scenario)  # the candidate plays no part
    for i in range(len(windows) - 1):
        request["warmup"] = task.timing.warmup if i == 0 else 0
        sent = time.perf_counter()
        reply, arrays = box.exchange(request, {"weight": windows[i]})
        round_trip = time.perf_counter() - sent
        if "error" in reply:
            raise CandidateError(f"scenario {scenario.name}, window {i}: {reply['error']}\n"
                                 f"{reply.get('trace', '')}".strip())
        _check_timing(reply, round_trip, scenario, i)
        violations = placement.validate(arrays.get("phy2log"), arrays.get("log2phy"),
                                        arrays.get("logcnt"), layers, experts, scenario)
        if violations:
            listed = "\n  ".join(str(v) for v in violations)
            raise CandidateError(
                f"invalid placement (scenario {scenario.name}, window {i}):\n  {listed}")
        phy2log = arrays["phy2log"].astype(np.int64)
        counts = arrays["logcnt"].astype(np.int64)  # validated: equal to phy2log's counts
        ahead, same = placement.measure_windows(loads[[i + 1, i]], phy2log, counts,
                                                  scenario)
        records.append({
            "window": i,
            "balancedness_gpu": ahead.gpu, "balancedness_slot": ahead.slot,
            "balancedness_node": ahead.node,
            "same_window_balancedness_gpu": same.gpu,
            "no_replication_balancedness_gpu": float(plain[i]),
            "migration": placement.migration(previous, phy2log),
            "time_ms": 1000 * statistics.median(reply["times"]),
        })
        previous = phy2log
    return records


def _check_timing(reply: dict, round_trip: float, scenario: Scenario, window: int) -> None:
    """The reported call times must account for the round trip measured here."""
    times, in_calls = reply.get("times"), reply.get("in_calls")
    if not isinstance(times, list) or not times or not isinstance(in_calls, (int, float)) or \
            any(not isinstance(t, (int, float)) or t < 0 for t in times):
        raise CandidateError(f"scenario {scenario.name}, window {window}: malformed reply "
                             "(no call times)")
    unexplained = round_trip - in_calls
    if unexplained > TIMING_SLACK_S + TIMING_SLACK_SHARE * round_trip:
        raise CandidateError(
            f"scenario {scenario.name}, window {window}: timing does not add up: the calls "
            f"reportedly took {1000 * in_calls:.1f} ms of a {1000 * round_trip:.1f} ms round "
            "trip (has the candidate tampered with the clock?)")


def _summarise(records: list[dict], scenario: Scenario, replicas_layers: int) -> dict:
    mean = {k: float(np.mean([r[k] for r in records])) for k in records[0] if k != "window"}
    moves = [r["migration"] for r in records[1:]]
    mean["migration"] = float(np.mean(moves)) if moves else 0.0
    mean["migration_fraction"] = mean["migration"] / replicas_layers
    mean["time_ms"] = float(np.median([r["time_ms"] for r in records]))
    mean["scenario"] = asdict(scenario)
    mean["per_window"] = records
    return mean


def score(per_scenario: dict[str, dict], task: TaskConfig) -> dict:
    """Overall metrics from per-scenario summaries (means over scenarios)."""
    keys = ("balancedness_gpu", "balancedness_slot", "balancedness_node",
            "same_window_balancedness_gpu", "no_replication_balancedness_gpu",
            "migration", "migration_fraction")
    metrics = {k: float(np.mean([s[k] for s in per_scenario.values()])) for k in keys}
    call_ms = [r["time_ms"] for s in per_scenario.values() for r in s["per_window"]]
    mean_s = float(np.mean(call_ms)) / 1000
    metrics["time_ms"] = float(np.median(call_ms))
    metrics["time_ms_mean"] = mean_s * 1000
    weights = task.score
    metrics["speed_score"] = min(1.0, weights.speed_reference_s / mean_s) if mean_s > 0 else 1.0
    total = weights.balancedness + weights.speed
    metrics["combined_score"] = (weights.balancedness * metrics["balancedness_gpu"]
                                 + weights.speed * metrics["speed_score"]) / total
    metrics["forecast_loss_gpu"] = (metrics["same_window_balancedness_gpu"]
                                    - metrics["balancedness_gpu"])
    return metrics


def feedback_text(metrics: dict) -> str:
    """A few lines for the next LLM prompt: per-scenario results and where it is weakest."""
    lines = []
    for name, s in metrics["scenarios"].items():
        worst = min(s["per_window"], key=lambda r: r["balancedness_gpu"])
        lines.append(
            f"{name}: balancedness_gpu {s['balancedness_gpu']:.4f} (same-window "
            f"{s['same_window_balancedness_gpu']:.4f}, no replication "
            f"{s['no_replication_balancedness_gpu']:.4f}), worst window {worst['window']} "
            f"{worst['balancedness_gpu']:.4f}, {s['time_ms']:.2f} ms/call, "
            f"{s['migration']:.0f} slots moved per rebalance")
    return "\n".join(lines)


def evaluate_program(program_path: str | os.PathLike, task: TaskConfig | None = None,
                     workload: str | None = None,
                     results_dir: str | os.PathLike | None = None) -> dict:
    """Evaluate one candidate program; never raises for anything the candidate does.

    Returns {"correct": bool, "error": str | None, "metrics": dict, "feedback": str}
    and, with results_dir, writes metrics.json and correct.json there. Problems with
    the task itself (missing trace, bad scenario) raise WorkloadError / ValueError.
    """
    task = task or load_task_config()
    started = time.perf_counter()
    workload_name, windows = load_windows(task, workload)
    problems = [p for s in task.scenarios for p in s.problems(windows.shape[2])]
    if problems:
        raise ValueError("; ".join(problems))
    program_path = Path(program_path).resolve()
    result: dict = {"correct": False, "error": None, "metrics": {}, "feedback": ""}
    try:
        per_scenario = _evaluate_in_sandbox(program_path, windows, task)
    except (CandidateError, SandboxError) as exc:
        result["error"] = str(exc)
        result["feedback"] = f"The program failed: {exc}"
    else:
        metrics = score(per_scenario, task)
        metrics["scenarios"] = per_scenario
        metrics["workload"] = workload_name
        metrics["windows_scored"] = int(len(windows) - 1)
        result.update(correct=True, metrics=metrics, feedback=feedback_text(metrics))
    result["metrics"]["eval_seconds"] = time.perf_counter() - started
    if results_dir is not None:
        write_results(Path(results_dir), result)
    return result


def _evaluate_in_sandbox(program_path: Path, windows: np.ndarray, task: TaskConfig) -> dict:
    args = [str(program_path), channel.__file__, str(task.timing.torch_threads)]
    layers = windows.shape[1]
    with Sandbox(RUNNER, args, task.limits, threads=task.timing.torch_threads) as box:
        hello, _ = box.receive()
        if "error" in hello:
            raise CandidateError(f"{hello['error']}\n{hello.get('trace', '')}".strip())
        return {s.name: _summarise(_run_scenario(box, windows, s, task), s,
                                   layers * s.num_replicas)
                for s in task.scenarios}


def write_results(results_dir: Path, result: dict) -> None:
    """Write metrics.json and correct.json atomically."""
    results_dir.mkdir(parents=True, exist_ok=True)
    metrics = dict(result["metrics"])
    if not result["correct"]:
        metrics.update(combined_score=None, error=result["error"])
    _write_json(results_dir / "metrics.json", metrics)
    _write_json(results_dir / "correct.json",
                {"correct": result["correct"], "error": result["error"]})


def _write_json(path: Path, data: dict) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(data, f, indent=2)
    os.replace(f.name, path)



def check_task(task: dict) -> TaskConfig:
    """Check a task mapping (from the run config) and build its TaskConfig."""
    return task_config_from_dict(task)


def evaluate_task(program_path: str, task: dict, results_dir: str | None = None) -> dict:
    """The engine's entry point: evaluate_program with the task given as a mapping."""
    return evaluate_program(program_path, check_task(task), None, results_dir)
