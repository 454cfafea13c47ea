"""Simulation + validation of one 58 x 288 window versus a per-expert Python loop.

Target: `placement.validate` + `placement.measure` together are at least 100x
faster than a reference simulator written in the style of the published EPLB
evaluators (a Python double loop over layers x logical experts, with an inner
loop over each expert's replicas and torch scalar indexing per replica).

Both sides are timed in this process, interleaved round by round; medians are
reported. The reference does no validation at all, so the ratio is conservative.

Run from the project root:  python benchmarks/bench_simulation.py
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eplb import placement, synthetic  # noqa: E402
from eplb.placement import Scenario  # noqa: E402
from eplb.workload import make_windows  # noqa: E402

TARGET = 100.0
SCENARIO = Scenario("ds_32gpu", num_replicas=288, num_groups=8, num_nodes=4, num_gpus=32)
ROUNDS = 7             # interleaved rounds; each times the reference once
FAST_CALLS = 20        # calls of the vectorised path per round (median kept)


def reference_simulation(load: torch.Tensor, log2phy: torch.Tensor, logcnt: torch.Tensor,
                         num_replicas: int, num_gpus: int) -> tuple[float, float]:
    """Per-expert loop in the published-evaluator style: (slot, gpu) balancedness.

    For each layer and each logical expert, its load is divided by its replica
    count and added, one replica at a time, into a per-slot accumulator with
    scalar tensor indexing. GPU loads are the per-slot loads summed in runs.
    """
    layers, experts = load.shape
    slot_load = torch.zeros(layers, num_replicas, dtype=torch.float64)
    for layer in range(layers):
        for expert in range(experts):
            copies = int(logcnt[layer, expert].item())
            if copies <= 0:
                continue
            share = load[layer, expert].item() / copies
            for k in range(copies):
                slot = int(log2phy[layer, expert, k].item())
                slot_load[layer, slot] += share
    gpu_load = slot_load.reshape(layers, num_gpus, -1).sum(dim=2)
    results = []
    for units in (slot_load, gpu_load):
        mean_sum = units.mean(dim=1).sum().item()
        max_sum = units.max(dim=1).values.sum().item()
        results.append(mean_sum / max_sum if max_sum > 0 else 1.0)
    return results[0], results[1]


def vectorised(phy2log, log2phy, logcnt, load: np.ndarray) -> placement.Balance:
    """What the evaluator does per window: validate, count replicas, measure."""
    layers, experts = load.shape
    violations = placement.validate(phy2log, log2phy, logcnt, layers, experts, SCENARIO)
    assert not violations, violations
    phy = np.asarray(phy2log).astype(np.int64)
    counts = placement.replica_counts(phy, experts)
    return placement.measure(load, phy, counts, SCENARIO)


def load_baseline():
    spec = importlib.util.spec_from_file_location("initial_candidate", ROOT / "initial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rebalance_experts


def main() -> int:
    spec = synthetic.SyntheticSpec(steps=300)          # 3 windows of 100 steps, real shape
    windows = make_windows(synthetic.generate(spec), 100)
    rebalance = load_baseline()
    phy2log_t, log2phy_t, logcnt_t = rebalance(
        torch.from_numpy(windows[0]), SCENARIO.num_replicas, SCENARIO.num_groups,
        SCENARIO.num_nodes, SCENARIO.num_gpus)
    phy2log, log2phy, logcnt = phy2log_t.numpy(), log2phy_t.numpy(), logcnt_t.numpy()
    load = windows[1].astype(np.float64)               # scored on the next window
    load_t = torch.from_numpy(load)
    layers, experts = load.shape
    print(f"window {layers} layers x {experts} experts, {SCENARIO.num_replicas} replicas, "
          f"{SCENARIO.num_gpus} GPUs, {SCENARIO.num_nodes} nodes, log2phy width "
          f"{log2phy.shape[2]}")

    ref_slot, ref_gpu = reference_simulation(load_t, log2phy_t, logcnt_t,
                                             SCENARIO.num_replicas, SCENARIO.num_gpus)
    ours = vectorised(phy2log, log2phy, logcnt, load)
    print(f"balancedness gpu: reference {ref_gpu:.10f}  ours {ours.gpu:.10f}")
    print(f"balancedness slot: reference {ref_slot:.10f}  ours {ours.slot:.10f}")
    assert np.isclose(ref_gpu, ours.gpu, rtol=1e-9, atol=0), (ref_gpu, ours.gpu)
    assert np.isclose(ref_slot, ours.slot, rtol=1e-9, atol=0), (ref_slot, ours.slot)

    for _ in range(3):                                 # warm-up of the fast path
        vectorised(phy2log, log2phy, logcnt, load)
    ref_times, fast_times, measure_times, validate_times = [], [], [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        reference_simulation(load_t, log2phy_t, logcnt_t, SCENARIO.num_replicas,
                             SCENARIO.num_gpus)
        ref_times.append(time.perf_counter() - start)
        inner, inner_measure, inner_validate = [], [], []
        for _ in range(FAST_CALLS):
            start = time.perf_counter()
            vectorised(phy2log, log2phy, logcnt, load)
            inner.append(time.perf_counter() - start)
            start = time.perf_counter()
            placement.measure(load, phy2log, logcnt, SCENARIO)
            inner_measure.append(time.perf_counter() - start)
            start = time.perf_counter()
            placement.validate(phy2log, log2phy, logcnt, layers, experts, SCENARIO)
            inner_validate.append(time.perf_counter() - start)
        fast_times.append(statistics.median(inner))
        measure_times.append(statistics.median(inner_measure))
        validate_times.append(statistics.median(inner_validate))

    ref = statistics.median(ref_times)
    fast = statistics.median(fast_times)
    meas = statistics.median(measure_times)
    val = statistics.median(validate_times)
    ratio = ref / fast
    print(f"reference per-expert loop (simulation only): {ref * 1000:9.2f} ms "
          f"(median of {ROUNDS})")
    print(f"validate + replica_counts + measure:         {fast * 1000:9.3f} ms "
          f"(median of {ROUNDS} round medians x {FAST_CALLS} calls)")
    print(f"   validate alone:                           {val * 1000:9.3f} ms")
    print(f"   measure alone:                            {meas * 1000:9.3f} ms")
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"SUMMARY simulation+validation speed-up: {ratio:.0f}x "
          f"(reference {ref * 1000:.1f} ms / ours {fast * 1000:.3f} ms; "
          f"target >= {TARGET:.0f}x) {verdict}")
    print(f"SUMMARY measure-only speed-up: {ref / meas:.0f}x (informational)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
