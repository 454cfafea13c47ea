"""Child side of a candidate evaluation: runs inside the sandbox, never in the evaluator.

Usage (by the evaluator only):
    python -I candidate_runner.py PROGRAM_PATH CHANNEL_MODULE_PATH TORCH_THREADS

Imports the candidate, then answers "place" requests one window at a time, so
the candidate never holds a later window than the one it is asked about. Only
the `rebalance_experts` call is timed: warm-up calls first, then the median is
taken by the evaluator over `repeats` timed calls, each on a fresh copy of the
input. The evaluator checks that the time reported for the calls accounts for
the round trip it measured itself, so a candidate that tampers with the clock is
caught. Project packages cannot be imported from here.
"""

import importlib.abc
import importlib.util
import os
import sys
import traceback

BLOCKED_PACKAGES = {"eplb", "evolve", "evaluate", "run_evo"}


class _BlockProjectImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED_PACKAGES:
            raise ImportError(f"candidates may not import the harness package {name!r}")
        return None


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _describe_error(exc):
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc):
        text = f"memory limit exceeded ({text})"
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return text, "".join(frames)[-3000:]


def _as_arrays(result, torch):
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        kind = type(result).__name__
        length = f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""
        raise TypeError(
            f"rebalance_experts must return a tuple (phy2log, log2phy, logcnt); got {kind}{length}")
    arrays = {}
    for name, value in zip(("phy2log", "log2phy", "logcnt"), result, strict=True):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
        arrays[name] = value.detach().cpu().numpy()
    return arrays


def _place(request, weight, rebalance, torch, clock):
    """Warm-up calls, then timed calls; returns the first timed result, the timed
    durations, and the time spent in all calls (for the evaluator's cross-check)."""
    args = (request["num_replicas"], request["num_groups"], request["num_nodes"],
            request["num_gpus"])
    base = torch.from_numpy(weight)
    times, first, in_calls = [], None, 0.0
    for _ in range(request.get("warmup", 0)):
        fresh = base.clone()
        start = clock()
        rebalance(fresh, *args)
        in_calls += clock() - start
    for _ in range(max(1, request.get("repeats", 1))):
        fresh = base.clone()
        start = clock()
        result = rebalance(fresh, *args)
        times.append(clock() - start)
        if first is None:
            first = result
    return _as_arrays(first, torch), times, in_calls + sum(times)


def main():
    from time import perf_counter as clock  # a local: out of the candidate's easy reach

    program_path, channel_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    channel = _load_module("_sandbox_channel", channel_path)
    inbox = int(os.environ.pop("EVOLVE_SANDBOX_IN"))
    outbox = int(os.environ.pop("EVOLVE_SANDBOX_OUT"))
    sys.meta_path.insert(0, _BlockProjectImports())
    try:
        import torch

        torch.set_num_threads(threads)
        candidate = _load_module("candidate", program_path)
        rebalance = getattr(candidate, "rebalance_experts", None)
        if not callable(rebalance):
            raise AttributeError("the program defines no callable rebalance_experts")
    except BaseException as exc:  # noqa: BLE001 - everything the candidate does is reported
        text, trace = _describe_error(exc)
        channel.send(outbox, {"error": f"loading the program failed: {text}", "trace": trace})
        return
    channel.send(outbox, {"ready": True})
    while True:
        try:
            request, arrays = channel.receive(inbox)
        except EOFError:
            return
        if request.get("op") != "place":
            return
        try:
            result, times, in_calls = _place(request, arrays["weight"], rebalance, torch,
                                             clock)
        except BaseException as exc:  # noqa: BLE001
            text, trace = _describe_error(exc)
            channel.send(outbox, {"error": f"rebalance_experts raised {text}", "trace": trace})
            return
        channel.send(outbox, {"times": times, "in_calls": in_calls}, result)


if __name__ == "__main__":
    main()
