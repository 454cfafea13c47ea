"""The evaluation protocol: run a candidate window by window, check, score, report.

For each scenario, at each window boundary i (but the last) the deployed placement
is scored on window i+1 (predictive), also on window i (for a placement just
computed from window i: what a perfect forecast would give) and against a
no-replication layout. Whether the candidate, in its
sandbox, is asked for a new placement from window i first is up to the trigger
policy of `rebalance:` (eplb/dynamic.py), which sees only windows <= i; the
default (every window, no warm-up) asks at every boundary, so the placement from
window i is scored on window i+1. Warm-up windows (before the first placement)
are observed but not scored: no candidate placement is deployed yet. Each window's
call is timed once, from this side (eplb/call_timing.py: the rule, wall and CPU);
checking and scoring happen here, untimed, while the candidate works on the next
window (`_run_scenario` says when the check must come first).

Per scenario, means over scored windows unless said otherwise:
  balancedness_gpu/slot/node   mean unit load / max unit load (summed over layers)
  locality_nodes_per_group     per layer, the mean over groups of the distinct nodes
                               hosting replicas of the group's experts (1.0 = packed)
  locality_nodes_per_group_weighted  the same with each (layer, group) weighted by its
                               tokens in the scored window
  rebalances, layers_updated   candidate calls (each installs something) and layer
                               re-placements over the trace
  migration_slots              slots whose expert changed, over the trace (total), and
                               migration_slots_per_rebalance (the first install: 0)
  migration                    mean slots changed per rebalance that replaced a placement
  migration_fraction           migration / (layers * num_replicas)
  migration_bytes              migration_slots * rebalance.expert_bytes
  time_ms                      median call time over the windows the candidate was called:
                               max(cpu_ms, wall_ms), measured here (eplb/call_timing.py)
  cpu_ms, wall_ms              medians of the child's CPU time (all threads) and of the
                               round trip less run-queue waits, each less the cost of
                               the payload (an echo answered before the candidate's import)
  colocated_replicas           replicas on a GPU that already holds the same expert, in the
                               deployed placement (eplb/colocation.py); per layer in
                               colocated_replicas_per_layer. An error instead with
                               placement_rules.colocated_replicas: error
Serving (the step-time model of eplb/serving.py, hardware from `hardware:`):
  moe_time_ms, ideal_moe_time_ms  modelled MoE time per step of the placement, and of a
                               perfectly balanced one with every group on one node
  throughput_vs_ideal          ideal_moe_time / moe_time (placement only, 1.0 = ideal)
  internode_transfers_per_token  inter-node transfers per routed token (copies /
                               experts_per_token), mean over layers, under hardware.dispatch
  migration_seconds            per rebalance that replaced a placement (the first: none)
  migration_time_share         share of the window's serving time the migration costs
                               (stop-the-world stall, or the async lag on the old placement)
  serving_throughput_vs_ideal  ideal window time / window time including migration
  throughput_vs_no_replication no-replication layout's window time / window time
                               including migration (> 1: faster than no replication)
Overall values are means over scenarios, and
  speed_score      = min(1, speed_reference_s / mean call time)
  migration_score  = 1 - migration_fraction (1.0 when nothing moves)
  locality_score   = 1 / locality_nodes_per_group
  combined_score   = (w_b * B + w_s * speed_score + w_m * migration_score
                      + w_l * locality_score) / (w_b + w_s + w_m + w_l), weights `score:`,
                     B = balancedness_gpu, or serving_throughput_vs_ideal with
                     score.target = throughput.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from eplb import colocation, dynamic, placement, serving, sglang_trace, synthetic
from eplb.call_timing import CallClock, CallTime
from eplb.calls import (
    Answer,
    CandidateError,
    Progress,
    candidate_session,
    check_colocation,
    checked,
    observe_window,
    read_answer,
    send_request,
    warm_up,
)
from eplb.config import TaskConfig, load_task_config, task_config_from_dict
from eplb.placement import Scenario
from eplb.workload import load_trace, make_windows
from evolve import sandbox
from evolve.atomic import atomic_write, write_json
from evolve.sandbox import Sandbox, SandboxError, isolation_warning

OUTPUT_TAIL_CHARS = 64_000  # of a valid candidate's printed output, in the result
_WINDOW_CACHE: dict[tuple, tuple[str, np.ndarray]] = {}


def _resolve(task: TaskConfig, spec: str) -> Path:
    """A trace path as given if it exists (or is absolute), else relative to the project."""
    return Path(spec) if Path(spec).is_absolute() or Path(spec).exists() \
        else task.resolve(spec)


def _file_key(path: Path) -> tuple:
    stat = path.stat() if path.is_file() else None
    return str(path), stat and (stat.st_size, stat.st_mtime_ns)


def load_windows(task: TaskConfig, workload: str | None = None) -> tuple[str, np.ndarray]:
    """The task's windows (windows, layers, experts) and a name for them; cached per process.

    SGLang recorder files (eplb/sglang_trace.py) are windows already; other traces are
    steps, summed into windows of rebalance_interval steps.
    """
    spec = workload or task.workload
    sglang = None if spec == "synthetic" else \
        sglang_trace.sources(spec, lambda part: _resolve(task, part))
    if spec == "synthetic":
        key = ("synthetic", task.synthetic, task.rebalance_interval, task.max_windows)
    elif sglang is not None:
        key = ("sglang", *map(_file_key, sglang), task.rebalance_interval, task.max_windows)
    else:
        path = _resolve(task, spec)
        key = (*_file_key(path), task.rebalance_interval, task.max_windows)
    if key not in _WINDOW_CACHE:
        if sglang is not None:
            name, windows = sglang_trace.load_windows(sglang, task.rebalance_interval,
                                                      task.max_windows)
        else:
            if spec == "synthetic":
                name, steps = f"synthetic(seed={task.synthetic.seed})", synthetic.generate(
                    task.synthetic)
            else:
                name, steps = path.name, load_trace(path)
            windows = make_windows(steps, task.rebalance_interval, task.max_windows)
        _WINDOW_CACHE.clear()
        _WINDOW_CACHE[key] = (name, windows)
    return _WINDOW_CACHE[key]


class _Deployment:
    """One scenario's deployed placement, and the records of the windows it served."""

    def __init__(self, scenario: Scenario, task: TaskConfig, loads: np.ndarray,
                 trace_key: str):
        self.scenario, self.task, self.loads = scenario, task, loads
        self.layers, self.experts = loads.shape[1:]
        self.deployed: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self.records: list[dict] = []
        # references no candidate plays a part in: kept for every candidate
        self.plain, self.group_tokens = _kept((trace_key, scenario), lambda: (
            placement.no_replication_gpu(loads[1:], scenario),
            loads.reshape(len(loads), self.layers, scenario.num_groups, -1).sum(axis=3)))
        self.cost = _ServingCost(task, scenario, loads, self.experts, trace_key)

    def install(self, answer: Answer) -> None:
        """Check the answer (CandidateError if invalid), deploy it on its layers, and
        score it on the next window."""
        phy2log, logcnt = checked(answer.arrays, self.layers, self.experts, self.scenario,
                                   answer.window)
        check_colocation(phy2log, self.scenario, self.task, answer.window)
        before, due = self.deployed, answer.due
        if before is not None and not due.all():
            phy2log = np.where(due[:, None], phy2log, before)
            logcnt = np.where(due[:, None], logcnt, self.counts)
        moved = placement.migration(before, phy2log)
        self.deployed, self.counts = phy2log, logcnt
        self._score(answer.window, before, True, int(due.sum()), moved, answer.timed)

    def keep(self, window: int) -> None:
        """No call at this boundary: the deployed placement serves the next window too."""
        if self.deployed is not None:  # else warm-up: nothing deployed, nothing to score
            self._score(window, self.deployed, False, 0, 0, CallTime(None, None, None))

    def _score(self, i: int, before: np.ndarray | None, called: bool, layers_updated: int,
               moved: int, timed: CallTime) -> None:
        """The record of window i+1 served by the placement deployed at boundary i."""
        deployed, counts, scenario = self.deployed, self.counts, self.scenario
        ahead, same = placement.measure_windows(self.loads[[i + 1, i]], deployed, counts,
                                                scenario)
        nodes = placement.nodes_per_group(deployed, self.experts, scenario)
        colocated = colocation.colocated_replicas(deployed, scenario.num_gpus)
        tokens = self.group_tokens[i + 1]
        total = tokens.sum()
        self.records.append({
            "window": i,
            "balancedness_gpu": ahead.gpu, "balancedness_slot": ahead.slot,
            "balancedness_node": ahead.node,
            "same_window_balancedness_gpu": same.gpu,
            "no_replication_balancedness_gpu": float(self.plain[i]),
            "locality_nodes_per_group": float(nodes.mean()),
            "locality_nodes_per_group_weighted":
                float((nodes * tokens).sum() / total) if total > 0 else float(nodes.mean()),
            "rebalanced": called,
            "layers_updated": layers_updated,
            "migration": moved,
            "time_ms": timed.time_ms, "cpu_ms": timed.cpu_ms, "wall_ms": timed.wall_ms,
            "colocated_replicas": int(colocated.sum()),
            "colocated_replicas_per_layer": colocated.tolist(),
            **self.cost.window(i, deployed, before, moved),
        })


def _run_scenario(box: Sandbox, windows: np.ndarray, loads: np.ndarray, scenario: Scenario,
                  task: TaskConfig, keywords: list[str], progress: Progress,
                  clock: CallClock, trace_key: str) -> list[dict]:
    """Walk the window boundaries: trigger, ask the candidate, check, install, score.

    A window's answer is checked and scored while the candidate works on the next
    window's request, unless that request needs the answer installed first (the
    candidate asks for `previous`, or the trigger looks at the deployed placement's
    balance), or a reply came before this side had finished (the candidate is faster
    than the check: from then on the check comes first, so that no call's round trip
    includes it). Either way an answer is checked before the next reply is read, so the
    first invalid window is the one reported. `loads` are the windows as float64."""
    layers = windows.shape[1]
    request = {"op": "place", "num_replicas": scenario.num_replicas,
               "num_groups": scenario.num_groups, "num_nodes": scenario.num_nodes,
               "num_gpus": scenario.num_gpus,
               "history_windows": task.history_windows, "reset": True}
    observe = {"op": "observe", "history_windows": task.history_windows, "reset": True}
    trigger = dynamic.Trigger(task.rebalance, layers)
    deployment = _Deployment(scenario, task, loads, trace_key)
    answer: Answer | None = None  # received, not yet checked
    install_first = trigger.needs_balance or "previous" in keywords
    for i in range(len(windows) - 1):
        if answer is not None and install_first:
            deployment.install(answer)
            answer = None
        balance = placement.measure(loads[i], deployment.deployed, deployment.counts,
                                    scenario).gpu \
            if trigger.needs_balance and deployment.deployed is not None else None
        due = trigger.due(i, loads[i], balance)
        if not due.any():
            if answer is not None:
                deployment.install(answer)
                answer = None
            if "history" in keywords and task.history_windows:
                observe_window(box, observe, windows[i], scenario, i, clock)
                request["reset"] = observe["reset"] = False
            deployment.keep(i)
            continue
        if deployment.deployed is None and answer is None:
            warm_up(box, request, windows[i], scenario, i, task, clock)
        arrays = {"weight": windows[i]}
        if "previous" in keywords and deployment.deployed is not None:
            arrays["previous"] = deployment.deployed
        call = send_request(box, dict(request, op="place"), arrays, scenario, i)
        if answer is not None:
            deployment.install(answer)  # while the candidate works on window i
        answer = read_answer(box, call, due, scenario, task, progress, clock)
        install_first = install_first or answer.late
        trigger.installed(loads[i], due)
        request["reset"] = observe["reset"] = False  # only a scenario's first message
    if answer is not None:
        deployment.install(answer)
    return deployment.records


_KEPT: dict[tuple, tuple] = {}


def _trace_digest(windows: np.ndarray) -> str:
    """A key for the windows' content (the references computed from them are kept per
    process, for every candidate evaluated on the same windows)."""
    data = np.ascontiguousarray(windows)
    return hashlib.blake2b(memoryview(data).cast("B"), digest_size=16).hexdigest() + \
        f"{data.dtype}{data.shape}"


def _kept(key: tuple, compute) -> tuple:
    """compute()'s result, computed once per process for `key` (which names the windows
    by their digest): for references that depend on the windows, never on a candidate."""
    if key not in _KEPT:
        if len(_KEPT) >= 32:
            _KEPT.clear()
        _KEPT[key] = compute()
    return _KEPT[key]


class _ServingCost:
    """One scenario's step-time model (eplb/serving.py) over the scored windows."""

    def __init__(self, task: TaskConfig, scenario: Scenario, loads: np.ndarray, experts: int,
                 trace_key: str):
        self.hw = task.hardware.resolve()
        self.topo = serving.Topology(scenario.num_replicas, scenario.num_gpus,
                                     scenario.num_nodes, scenario.num_groups, experts)
        self.loads, self.steps = loads, task.rebalance_interval
        self.mode, self.expert_bytes = task.rebalance.migration_mode, task.rebalance.expert_bytes
        # seconds per window of the ideal and of the no-replication layout
        self.ideal, self.plain = _kept((trace_key, self.topo, self.hw), lambda: (
            serving.ideal_layer_seconds(loads[1:], self.topo, self.hw).sum(axis=1),
            serving.no_replication_seconds(loads[1:], self.topo, self.hw).sum(axis=1)))

    def window(self, i: int, deployed: np.ndarray, old: np.ndarray | None,
               moved: int) -> dict:
        """The serving metrics of window i+1 under `deployed`, installed at boundary i
        over `old` (moving `moved` slots)."""
        load = self.loads[i + 1]
        cost = serving.placement_cost(load, deployed, self.topo, self.hw)
        new_s = float(cost.seconds.sum())
        migration_s = old_s = 0.0
        if moved:
            migration_s = serving.migration_seconds(old, deployed, self.topo, self.hw,
                                                    self.expert_bytes)
            if self.mode == "async":
                old_s = float(serving.placement_seconds(load, old, self.topo, self.hw).sum())
        served_s = serving.window_seconds(new_s, old_s, migration_s, self.mode)
        ideal_s, plain_s = float(self.ideal[i]), float(self.plain[i])
        return {"moe_time_ms": 1000 * new_s / self.steps,
                "ideal_moe_time_ms": 1000 * ideal_s / self.steps,
                "throughput_vs_ideal": ideal_s / new_s if new_s > 0 else 1.0,
                "internode_transfers_per_token": float(cost.transfers_per_token.mean()),
                "migration_seconds": migration_s,
                "migration_time_share": (served_s - new_s) / served_s if served_s > 0 else 0.0,
                "serving_throughput_vs_ideal": ideal_s / served_s if served_s > 0 else 1.0,
                "throughput_vs_no_replication": plain_s / served_s if served_s > 0 else 1.0}


MEANS = ("balancedness_gpu", "balancedness_slot", "balancedness_node",
         "same_window_balancedness_gpu", "no_replication_balancedness_gpu",
         "locality_nodes_per_group", "locality_nodes_per_group_weighted",
         "moe_time_ms", "ideal_moe_time_ms", "throughput_vs_ideal",
         "internode_transfers_per_token", "migration_time_share",
         "serving_throughput_vs_ideal", "throughput_vs_no_replication")


def _summarise(records: list[dict], scenario: Scenario, layers: int, task: TaskConfig) -> dict:
    summary = {k: float(np.mean([r[k] for r in records])) for k in MEANS}
    called = [r for r in records if r["rebalanced"]]
    moves = [r["migration"] for r in called]
    summary["rebalances"] = len(called)
    summary["layers_updated"] = sum(r["layers_updated"] for r in called)
    summary["migration_slots"] = sum(moves)
    summary["migration_slots_per_rebalance"] = moves
    summary["migration_bytes"] = sum(moves) * task.rebalance.expert_bytes
    # the first installation replaces no candidate placement: not a migration
    summary["migration"] = float(np.mean(moves[1:])) if len(moves) > 1 else 0.0
    summary["migration_fraction"] = summary["migration"] / (layers * scenario.num_replicas)
    seconds = [r["migration_seconds"] for r in called]
    summary["migration_seconds"] = float(np.mean(seconds[1:])) if len(seconds) > 1 else 0.0
    for key in ("time_ms", "cpu_ms", "wall_ms"):
        summary[key] = float(np.median([r[key] for r in called]))
    summary["colocated_replicas"] = float(np.mean([r["colocated_replicas"] for r in records]))
    summary["colocated_replicas_per_layer"] = np.mean(
        [r["colocated_replicas_per_layer"] for r in records], axis=0).tolist()
    summary["scenario"] = asdict(scenario)
    summary["per_window"] = records
    return summary


def score(per_scenario: dict[str, dict], task: TaskConfig) -> dict:
    """Overall metrics from per-scenario summaries (means over scenarios); see the module
    docstring for the formulas."""
    keys = (*MEANS, "migration", "migration_fraction", "rebalances", "layers_updated",
            "migration_slots", "migration_bytes", "migration_seconds")
    metrics = {k: float(np.mean([s[k] for s in per_scenario.values()])) for k in keys}
    call_ms = [r["time_ms"] for s in per_scenario.values() for r in s["per_window"]
               if r["time_ms"] is not None]
    mean_s = float(np.mean(call_ms)) / 1000
    metrics["time_ms"] = float(np.median(call_ms))
    for key in ("cpu_ms", "wall_ms"):
        metrics[key] = float(np.median([r[key] for s in per_scenario.values()
                                        for r in s["per_window"] if r[key] is not None]))
    metrics["time_ms_mean"] = mean_s * 1000
    weights = task.score
    metrics["speed_score"] = min(1.0, weights.speed_reference_s / mean_s) if mean_s > 0 else 1.0
    metrics["migration_score"] = 1.0 - metrics["migration_fraction"]
    metrics["locality_score"] = 1.0 / metrics["locality_nodes_per_group"]
    total = weights.balancedness + weights.speed + weights.migration + weights.locality
    target = "serving_throughput_vs_ideal" if weights.target == "throughput" \
        else "balancedness_gpu"
    metrics["combined_score"] = (weights.balancedness * metrics[target]
                                 + weights.speed * metrics["speed_score"]
                                 + weights.migration * metrics["migration_score"]
                                 + weights.locality * metrics["locality_score"]) / total
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
            f"{s['rebalances']} rebalances, {s['migration']:.0f} slots moved per rebalance, "
            f"a group's experts on {s['locality_nodes_per_group']:.2f} nodes, modelled MoE "
            f"step {s['moe_time_ms']:.1f} ms = {s['throughput_vs_ideal']:.3f} of ideal "
            f"({s['serving_throughput_vs_ideal']:.3f} with migration)")
    return "\n".join(lines)


def evaluate_program(program_path: str | os.PathLike, task: TaskConfig | None = None,
                     workload: str | None = None,
                     results_dir: str | os.PathLike | None = None,
                     prepared: dict | None = None) -> dict:
    """Evaluate one candidate program; never raises for anything the candidate does.

    Returns {"correct": bool, "error": str | None, "metrics": dict, "feedback": str,
    "output": str (the end of what a valid candidate printed)} and, with results_dir,
    writes metrics.json and correct.json there. `prepared` is
    `prepare_task`'s result, when the windows were loaded elsewhere (read only here).
    Problems with the task itself (missing trace, bad scenario) raise WorkloadError /
    ValueError.
    """
    task = task or load_task_config()
    started = time.perf_counter()
    sandbox.prestart()  # the template imports torch while the windows load
    if prepared is not None:
        workload_name, windows = prepared["workload"], prepared["windows"]
    else:
        workload_name, windows = load_windows(task, workload)
    problems = [p for s in task.scenarios for p in s.problems(windows.shape[2])]
    if task.rebalance.warmup_windows > len(windows) - 2:
        problems.append(f"rebalance.warmup_windows {task.rebalance.warmup_windows} leaves no "
                        f"window to score ({len(windows)} windows)")
    if problems:
        raise ValueError("; ".join(problems))
    program_path = Path(program_path).resolve()
    result: dict = {"correct": False, "error": None, "metrics": {}, "feedback": "",
                    "output": ""}
    try:
        per_scenario, isolation, result["output"] = _evaluate_in_sandbox(program_path,
                                                                          windows, task)
    except (CandidateError, SandboxError) as exc:
        result["error"] = str(exc)
        result["feedback"] = f"The program failed: {exc}"
    else:
        metrics = score(per_scenario, task)
        metrics["scenarios"] = per_scenario
        metrics["colocated_replicas"] = float(np.mean(
            [s["colocated_replicas"] for s in per_scenario.values()]))
        metrics["workload"] = workload_name
        metrics["windows_scored"] = int(len(windows) - 1 - task.rebalance.warmup_windows)
        metrics["rebalance"] = asdict(task.rebalance)
        metrics["isolation"] = isolation["level"]
        metrics["isolation_report"] = isolation
        result.update(correct=True, metrics=metrics, feedback=feedback_text(metrics))
    result["metrics"]["eval_seconds"] = time.perf_counter() - started
    if results_dir is not None:
        write_results(Path(results_dir), result)
    return result


def _evaluate_in_sandbox(program_path: Path, windows: np.ndarray, task: TaskConfig
                         ) -> tuple[dict, dict, str]:
    """Per-scenario summaries, the sandbox's isolation report, and the tail of what the
    candidate printed.

    Each scenario gets a fresh candidate process: the scenarios share their windows, so
    one process would be timed on inputs it had already been given. limits.timeout_s
    bounds all of them together."""
    layers = windows.shape[1]
    progress = Progress(planned=len(task.scenarios) * (len(windows) - 1))
    deadline = time.monotonic() + task.limits.timeout_s
    summaries, printed = {}, []
    trace_key = _trace_digest(windows)
    loads = _kept((trace_key,), lambda: (windows.astype(np.float64),))[0]
    for scenario in task.scenarios:
        clock = CallClock((layers, windows.shape[2], scenario.num_replicas))
        with candidate_session(program_path, task, clock) as (box, keywords):
            box.deadline = min(box.deadline, deadline)
            try:
                records = _run_scenario(box, windows, loads, scenario, task, keywords,
                                        progress, clock, trace_key)
            except SandboxError as exc:
                raise SandboxError(progress.explain(exc)) from None
            summaries[scenario.name] = _summarise(records, scenario, layers, task)
            isolation = box.isolation
            printed.append(box.output_tail(OUTPUT_TAIL_CHARS))
    return summaries, isolation, "\n".join(p for p in printed if p)[-OUTPUT_TAIL_CHARS:]


def write_results(results_dir: Path, result: dict) -> None:
    """Write metrics.json and correct.json atomically, and output.txt (the end of what
    the candidate printed) when it printed anything."""
    results_dir.mkdir(parents=True, exist_ok=True)
    metrics = dict(result["metrics"])
    if not result["correct"]:
        metrics.update(combined_score=None, error=result["error"])
    write_json(results_dir / "metrics.json", metrics)
    write_json(results_dir / "correct.json",
               {"correct": result["correct"], "error": result["error"]})
    if result.get("output"):
        atomic_write(results_dir / "output.txt", lambda f: f.write(result["output"]))


def check_task(task: dict) -> TaskConfig:
    """Check a task mapping (from the run config) and build its TaskConfig."""
    return task_config_from_dict(task)


def preflight_task(task: dict) -> list[str]:
    """Before a run starts: check the task mapping and whether this machine can jail
    candidates as `limits.isolation` asks (SandboxError if not); returns warnings."""
    warning = isolation_warning(check_task(task).limits)
    return [warning] if warning else []


def prepare_task(task: dict) -> dict:
    """Once per run, in the engine: the windows every evaluation needs, so that a
    distributed backend ships them to each worker once instead of once per candidate."""
    name, windows = load_windows(check_task(task))
    return {"workload": name, "windows": windows}


def evaluate_task(program_path: str, task: dict, results_dir: str | None = None,
                  prepared: dict | None = None) -> dict:
    """The engine's entry point: evaluate_program with the task given as a mapping."""
    return evaluate_program(program_path, check_task(task), None, results_dir, prepared)
