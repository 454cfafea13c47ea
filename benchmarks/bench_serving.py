"""What the serving metrics (eplb/serving.py) cost an evaluation, and the reference table.

Default: evaluates `initial.py` with configs/task/eplb.yaml RUNS times (after one warm-up
evaluation; windows loaded beforehand) and times, by wrapping in this process, the
evaluator's serving model (eplb.evaluator._ServingCost: its set-up per scenario and its
per-window metrics). Prints the share of each evaluation's wall time the model adds,
median over runs: its time less what it spent while the candidate was computing the
next window's answer (benchmarks/critical_path.py), which is printed beside. Target:
< 10% (the issue's bound on the wall time the new metrics may add).

--table: also prints (1) inter-node transfers per token on ds_32gpu for DeepSeek's
hierarchical (initial.py) and global (policies/deepseek_global.py) placements, under the
old per-(group, node) rule, DeepEP's normal kernels and its low-latency kernels, from the
token-level simulation (tests/token_dispatch_sim.py, 8192 tokens on 8 layers) and from the
analytic model, with the modelled MoE time of both, on the default synthetic trace
(placed on window 0, scored on window 1) and on two SGLang prefill files; (2) every
reference program (initial.py, policies/*.py) evaluated with each kernel
(hardware.dispatch) on the default synthetic trace and, when
../shared/traces/sglang-ep-statistics/ is present, on SGLang's real DeepSeek-V3 expert
statistics (8 aggregate files, one window each, decode files first, then prefill,
sorted by name; rebalance_interval 1, so each file's placement is scored on the next
file). The SGLang files are converted into a temporary .npy that is deleted afterwards.
On them, only ratios and migration seconds mean something: a "step" is a whole
benchmark run, so per-step times and migration shares do not. Takes several minutes.

Run from the project root:  python benchmarks/bench_serving.py [--table]
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import initial  # noqa: E402
from eplb import evaluator, serving, sglang_trace  # noqa: E402
from eplb.config import load_task_config  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
import token_dispatch_sim as sim  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import critical_path  # noqa: E402

TARGET_PERCENT = 10.0
RUNS = 3
SGLANG = ROOT.parent / "shared" / "traces" / "sglang-ep-statistics"
COLUMNS = ("balancedness_gpu", "internode_transfers_per_token", "moe_time_ms",
           "throughput_vs_ideal", "serving_throughput_vs_ideal", "migration_seconds",
           "time_ms", "migration")
SIM_LAYERS = list(range(0, 58, 8))
KERNELS = ("normal", "low_latency")


def timed_evaluations() -> None:
    """The serving model's share of each evaluation's wall time: the time it adds (work
    done while the candidate computes the next window's answer adds none, see
    critical_path.py) and, informational, all of its time."""
    spent = [0.0, 0.0]  # adding wall time, hidden behind the candidate
    cost = evaluator._ServingCost
    originals = {name: getattr(cost, name) for name in ("__init__", "window")}

    def wrap(func):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[critical_path.hidden()] += time.perf_counter() - start
        return wrapper

    for name, func in originals.items():
        setattr(cost, name, wrap(func))
    task = load_task_config()
    evaluator.load_windows(task)
    shares = []
    try:
        with critical_path.tracking():
            for run in range(RUNS + 1):
                spent[:] = [0.0, 0.0]
                started = time.perf_counter()
                result = evaluator.evaluate_program(ROOT / "initial.py", task)
                wall = time.perf_counter() - started
                assert result["correct"], result["error"]
                if run:
                    shares.append((100 * spent[0] / wall, *spent, wall))
    finally:
        for name, func in originals.items():
            setattr(cost, name, func)
    share, added_s, hidden_s, wall = sorted(shares)[len(shares) // 2]
    verdict = "PASS" if share < TARGET_PERCENT else "FAIL"
    print(f"SUMMARY serving metrics: {share:.2f}% of an evaluation's wall time (median of "
          f"{RUNS}; {1000 * added_s:.0f} ms of {wall:.2f} s; target < {TARGET_PERCENT:.0f}%) "
          f"{verdict}; in all {1000 * (added_s + hidden_s):.0f} ms = "
          f"{100 * (added_s + hidden_s) / wall:.1f}% with the time hidden behind the "
          "candidate's calls (informational)")


def sglang_statistics(folder: Path) -> np.ndarray:
    """The SGLang statistics as (files, 58, 256): decode files, then prefill, by name."""
    files = sorted(folder.glob("decode_*.json")) + sorted(folder.glob("prefill_*.json"))
    return np.stack([np.asarray(json.loads(f.read_text())["logical_count"])[3:].astype(
        np.int64) for f in files])


def table(workload: str | None, overrides: list[str], title: str) -> None:
    """One row per reference program on a workload, for each kernel."""
    programs = [ROOT / "initial.py", *sorted((ROOT / "policies").glob("*.py"))]
    for kernel in KERNELS:
        task = load_task_config(None, [*overrides, f"hardware.dispatch={kernel}"])
        print(f"\n{title}, hardware.dispatch={kernel}\n{'program':<28}"
              + "".join(f"{c[:24]:>25}" for c in COLUMNS))
        for path in programs:
            metrics = evaluator.evaluate_program(path, task, workload)["metrics"]
            print(f"{path.name:<28}" + "".join(f"{metrics[c]:>25.4f}" for c in COLUMNS))


def per_group_node_rule(loads: np.ndarray, phy2log: np.ndarray, topo: serving.Topology,
                        hw: serving.Hardware) -> float:
    """The model's old rule, for comparison: one transfer per token and remote (group,
    node), c independent copies per chosen group: transfers per token, mean over layers."""
    layers, experts = loads.shape
    counts = np.stack([np.bincount(row, minlength=experts) for row in phy2log])
    per_slot = np.take_along_axis(loads / np.maximum(counts, 1), phy2log, axis=1)
    node = np.arange(topo.num_replicas) // (topo.num_replicas // topo.num_nodes)
    group = phy2log // (experts // topo.num_groups)
    cell = (np.arange(layers)[:, None] * topo.num_groups + group) * topo.num_nodes + node
    group_node = np.bincount(cell.ravel(), weights=per_slot.ravel(), minlength=layers
                             * topo.num_groups * topo.num_nodes).reshape(layers, -1,
                                                                          topo.num_nodes)
    weight = group_node.sum(axis=-1, keepdims=True)
    c = topo.copies_per_group(hw)
    touched = weight / c * (1 - (1 - group_node / np.maximum(weight, 1e-300)) ** c)
    remote = (topo.num_nodes - 1) / topo.num_nodes
    return float((remote * touched.sum(axis=(1, 2)) / (loads.sum(axis=1) / 8)).mean())


def transfers_table(windows: np.ndarray, title: str) -> None:
    """Simulated and modelled transfers per token and MoE time, ds_32gpu, two policies."""
    topo = serving.Topology(288, 32, 4, 8, windows.shape[2])
    spec = importlib.util.spec_from_file_location("deepseek_global",
                                                  ROOT / "policies" / "deepseek_global.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loads = windows[1][SIM_LAYERS].astype(float)
    placements = {name: policy.rebalance_experts(torch.from_numpy(windows[0].astype(
        np.int64)), 288, 8, 4, 32)[0].numpy()[SIM_LAYERS]
        for name, policy in (("hierarchical", initial), ("global", module))}
    routing = sim.route(loads, topo.num_groups, serving.hardware("h800_ib400"))
    print(f"\n{title}: transfers per token (simulated / model) and MoE seconds of the "
          f"window's {len(SIM_LAYERS)} layers (simulated / model)")
    print(f"{'rule':<34}" + "".join(f"{name:>26}" for name in placements)
          + f"{'global / hierarchical':>24}")
    sims = {(name, kernel): sim.dispatch(routing, phy2log, topo, serving.hardware(
        "h800_ib400", dispatch=kernel)) for name, phy2log in placements.items()
        for kernel in KERNELS}
    old = [(sims[name, "normal"]["per_group_node"].mean(),
            per_group_node_rule(loads, phy2log, topo, serving.hardware("h800_ib400")))
           for name, phy2log in placements.items()]
    rows = [("old rule, one per (group, node)", old)]
    times = []
    for kernel in KERNELS:
        hw = serving.hardware("h800_ib400", dispatch=kernel)
        costs = {name: serving.placement_cost(loads, p, topo, hw)
                 for name, p in placements.items()}
        rows.append((f"DeepEP {kernel}", [(sims[name, kernel][kernel].mean(),
                                          costs[name].transfers_per_token.mean())
                                         for name in placements]))
        times.append((f"  MoE s, {kernel}", [(sims[name, kernel]["seconds"].sum(),
                                             costs[name].seconds.sum())
                                            for name in placements]))
    for label, cells in rows + times:
        ratio = cells[1][0] / cells[0][0], cells[1][1] / cells[0][1]
        print(f"{label:<34}" + "".join(f"{s:>12.3f} / {m:<11.3f}" for s, m in cells)
              + f"{ratio[0]:>11.2f} / {ratio[1]:<10.2f}")


def main() -> None:
    timed_evaluations()
    if "--table" not in sys.argv[1:]:
        return
    task = load_task_config()
    transfers_table(evaluator.load_windows(task)[1], "default synthetic trace")
    if SGLANG.is_dir():
        files = [SGLANG / "prefill_in1024.json", SGLANG / "prefill_in2048.json"]
        transfers_table(sglang_trace.load_windows(files, 1)[1],
                        "SGLang prefill_in1024 -> prefill_in2048")
    table(None, [], "default synthetic trace (means over the three scenarios)")
    if SGLANG.is_dir():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "sglang.npy"
            np.save(path, sglang_statistics(SGLANG))
            table(str(path), ["rebalance_interval=1"],
                  "SGLang DeepSeek-V3 statistics (8 files; ratios and migration seconds only)")
    else:
        print(f"\n{SGLANG} not found: SGLang table skipped")


if __name__ == "__main__":
    main()
