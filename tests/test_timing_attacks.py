"""Speed that cannot be faked: each timing attack gains nothing, honest programs are timed
as they run in-process.

Every attack candidate is the honest 80 ms program (tests/candidates/burns_80ms.py:
the baseline plus SHA-256 work of a known cost) with the attack added. Its true time is
measured here, in the test process, by calling the same honest function on the same
windows with this thread's CPU clock, which no candidate can reach. The bounds are
ratios with room for a loaded 2-core machine: a call's reported time must be at least
80% of its true cost (an attack that worked would report a few percent, or about half
for threads), and an honest program's within 20% of it. CPU time does not grow when
other processes compete for the cores, which is why these ratios hold under load.
"""

import importlib.util
import statistics
import time

import numpy as np
import pytest
import torch
from candidate_helpers import INITIAL, candidate_file

from eplb.call_timing import CallClock
from eplb.config import task_config_from_dict
from eplb.evaluator import evaluate_program, load_windows
from evolve.accounting import Snapshot

SMALL = {"name": "small", "num_replicas": 40, "num_groups": 4, "num_nodes": 2, "num_gpus": 8}
# the old protocol timed the median of `repeats` calls on one input: 3 makes a cache win
ATTACK_TASK = {"synthetic": {"steps": 600, "layers": 4, "experts": 32, "seed": 3},
               "rebalance_interval": 100, "scenarios": [SMALL],
               "timing": {"warmup": 1, "repeats": 3},
               "limits": {"timeout_s": 60, "memory_mb": 2048}}
# the default task's shape, so the baseline's calls take milliseconds, not microseconds
FULL = {"name": "ds_32gpu", "num_replicas": 288, "num_groups": 8, "num_nodes": 4,
        "num_gpus": 32}
BASELINE_TASK = {"synthetic": {"steps": 2000, "layers": 58, "experts": 256, "seed": 0},
                 "rebalance_interval": 100, "scenarios": [FULL],
                 "timing": {"warmup": 1, "repeats": 3},
                 "limits": {"timeout_s": 60, "memory_mb": 2048}}


CACHE_FLUSH_BYTES = 64 << 20  # more than this machine's caches


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_process_ms(function, task_data: dict) -> list[float]:
    """CPU milliseconds of `function` on each window the evaluation calls it with, in
    this process, one torch thread (as in the sandbox), with the CPU caches flushed
    before each call as the evaluator's own work between two calls flushes them."""
    task = task_config_from_dict(task_data)
    _, windows = load_windows(task)
    scenario = task.scenarios[0]
    args = (scenario.num_replicas, scenario.num_groups, scenario.num_nodes,
            scenario.num_gpus)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        function(torch.from_numpy(windows[0]).clone(), *args)  # warm-up
        times, flush = [], np.zeros(CACHE_FLUSH_BYTES, dtype=np.uint8)
        for window in windows[:-1]:
            flush += 1
            start = time.thread_time()
            function(torch.from_numpy(window).clone(), *args)
            times.append(1000 * (time.thread_time() - start))
    finally:
        torch.set_num_threads(threads)
    return times


@pytest.fixture(scope="module")
def true_ms():
    """What one honest call of the 80 ms program costs, measured here."""
    with candidate_file("burns_80ms") as path:
        honest = _load(path, "burns_80ms_in_test").honest_rebalance
        return statistics.median(in_process_ms(honest, ATTACK_TASK))


def evaluate(name: str, task_data: dict = ATTACK_TASK) -> dict:
    with candidate_file(name) as path:
        result = evaluate_program(path, task_config_from_dict(task_data))
    assert result["correct"] is True, result["error"]
    return result["metrics"]


ATTEMPTS = 3  # evaluations at most, for the upper bound (see below)


def assert_timed_as_in_process(function, program, task_data: dict) -> None:
    """The program's time_ms (its median call) is at most 20% above the median of
    `function` measured here, just before and just after the evaluation, and it and the
    program's fastest call are at least 80% of the fastest here (nothing the call used
    is taken off). The lower bound holds in every evaluation. Another process on a
    shared 2-core machine can slow a few-millisecond call by a third for a while (seen
    once in CI), on either side: the upper bound holds in at least one of up to
    ATTEMPTS evaluations, which a program timed too high every time would still fail."""
    ratios = []
    for _ in range(ATTEMPTS):
        here = in_process_ms(function, task_data)
        with candidate_file(program) as path:
            result = evaluate_program(path, task_config_from_dict(task_data))
        here += in_process_ms(function, task_data)
        assert result["correct"] is True, result["error"]
        metrics = result["metrics"]
        fastest = min(r["time_ms"] for s in metrics["scenarios"].values()
                      for r in s["per_window"])
        assert fastest >= 0.8 * min(here), (fastest, min(here))
        assert metrics["time_ms"] >= 0.8 * min(here), (metrics["time_ms"], here)
        ratios.append(metrics["time_ms"] / statistics.median(here))
        if ratios[-1] <= 1.2:
            return
    raise AssertionError(f"time_ms / in-process median was {ratios}, above 1.2 each time")


def test_the_honest_80ms_program_is_timed_as_it_runs_in_process():
    with candidate_file("burns_80ms") as path:
        honest = _load(path, "burns_80ms_honest").honest_rebalance
    assert_timed_as_in_process(honest, "burns_80ms", ATTACK_TASK)


def test_the_baseline_is_timed_as_it_runs_in_process():
    """The baseline's call takes about 3 ms: the payload's cost, taken off by the echo
    calibration, is a sizeable part of its round trip."""
    initial = _load(INITIAL, "initial_in_test")
    assert_timed_as_in_process(initial.rebalance_experts, INITIAL, BASELINE_TASK)


@pytest.mark.parametrize("attack", [
    "caches_by_hash",       # memoize by input hash: repeats on one input were free
    "rewrites_channel",     # rewrite the per-call times the child sent
    "slows_the_clock",      # replace time.perf_counter / monotonic and the runner's clock
    "works_between_calls",  # do the work in a thread started on an earlier call
    "spawns_threads",       # split the work over threads (CPU counts, not the wall)
])
def test_a_timing_attack_gains_nothing(attack, true_ms):
    metrics = evaluate(attack)
    assert metrics["time_ms"] >= 0.8 * true_ms, (metrics["time_ms"], true_ms)
    if attack == "spawns_threads":  # the charged figure is the CPU of all its threads
        assert metrics["cpu_ms"] >= 0.8 * true_ms


def _at(wall_ms: float, cpu_ms: float, queued_ms: float = 0.0) -> Snapshot:
    return Snapshot(wall_ns=int(wall_ms * 1e6), cpu_ns=int(cpu_ms * 1e6),
                    queued_ns=int(queued_ms * 1e6), own_queued_ns=0)


def test_cpu_used_between_two_calls_is_charged_to_the_next_one():
    clock = CallClock()
    clock.untimed(_at(0, 0))          # the previous reply
    # 40 ms of CPU in a background thread while the evaluator scored, then a 10 ms call
    timed = clock.charge(_at(100, 40), _at(110, 50), moved=0)
    assert timed.cpu_ms == pytest.approx(50) and timed.wall_ms == pytest.approx(10)
    assert timed.time_ms == pytest.approx(50)
    # the next call starts from this reply: nothing is charged twice
    assert clock.charge(_at(200, 50), _at(205, 55), moved=0).cpu_ms == pytest.approx(5)


def test_waiting_counts_but_a_loaded_machine_does_not():
    clock = CallClock()
    # a call that sleeps: 50 ms of wall time, no CPU
    assert clock.charge(_at(0, 0), _at(50, 0), moved=0).time_ms == pytest.approx(50)
    # a 10 ms call that waited 30 ms for a CPU held by another program
    assert clock.charge(_at(100, 0), _at(140, 10, 30), moved=0).time_ms == \
        pytest.approx(10)


def test_a_reply_that_came_while_the_evaluator_was_busy():
    """The evaluator was busy (checking the previous window, or paused) for 20 ms after
    sending; the reply had come by then. The call is charged its 2 ms of CPU, not the
    round trip; a child that wrote part of its reply early is charged the 28 ms it then
    kept the evaluator waiting."""
    clock = CallClock()
    honest = clock.charge(_at(0, 0), _at(20.3, 2), moved=0, looked=_at(20, 2))
    assert honest.time_ms == pytest.approx(2) and honest.wall_ms == pytest.approx(0.3)
    clock = CallClock()
    early_byte = clock.charge(_at(0, 0), _at(48, 1), moved=0, looked=_at(20, 1))
    assert early_byte.time_ms == pytest.approx(28)
