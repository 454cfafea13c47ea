"""Child side of a candidate evaluation: runs inside the sandbox, never in the evaluator.

Started by `evolve.sandbox` (forked from its template, confined, with the channel
module already loaded): `serve(channel, inbox, outbox, [PROGRAM_PATH, TORCH_THREADS])`.

Answers echoes, imports the candidate when asked, then answers "place" requests one
window at a time, so the candidate never holds a later window than the one it is
asked about. The
candidate may ask, by naming them as parameters of `rebalance_experts`, for
`history` (int64 [H, L, E]: the windows this runner was sent before the current
one in this scenario, oldest first, at most `history_windows` of them; [0, L, E]
at first) and `previous` (int64 [L, R]: the deployed phy2log, sent by the
evaluator, or None before the first placement is installed). The "ready"
message says which it asks for; the evaluator then also sends the windows it
only observes ("observe": appended to the history, nothing called).

Each "place" request is one `rebalance_experts` call on a fresh copy of its input;
"warmup" is the same call with the result dropped. Nothing here measures time: the
evaluator times each exchange from its own side and reads the child's CPU time from
the kernel (eplb/call_timing.py), so nothing the candidate does to this process can
change a figure that is scored. Before the candidate is imported, the runner
answers "echo" requests (the work of a call without the call), by which the
evaluator measures what moving a call's payload costs; "load" then imports it.
Project packages cannot be imported from here (and, in the jail, not read either).
"""

import importlib.abc
import importlib.util
import inspect
import sys
import traceback

import numpy as np

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
        arrays[name] = _narrow(value.detach().cpu().numpy())
    return arrays


def _narrow(array):
    """An integer array in int16 or int32 when that holds all its values (a quarter or a
    half of the bytes to move and check; the values are the same), else as it is."""
    if array.dtype.kind not in "iu" or not array.size:
        return array
    low, high = int(array.min()), int(array.max())
    for dtype in (np.int16, np.int32):
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return array.astype(dtype)
    return array


def _keywords(rebalance):
    """The optional inputs the candidate names as parameters: history and/or previous."""
    try:
        names = inspect.signature(rebalance).parameters
    except (TypeError, ValueError):
        return []
    return [name for name in ("history", "previous") if name in names]


def _call(request, weight, rebalance, torch, **extras):
    """One `rebalance_experts` call on a fresh copy of the inputs; `extras` (numpy arrays
    or None) are passed as keyword arguments. Returns the result as numpy arrays."""
    args = (request["num_replicas"], request["num_groups"], request["num_nodes"],
            request["num_gpus"])
    kwargs = {k: None if v is None else torch.from_numpy(v).clone() for k, v in extras.items()}
    result = rebalance(torch.from_numpy(weight).clone(), *args, **kwargs)
    return _as_arrays(result, torch)


def _echo(channel, outbox, request, arrays, torch):
    """Before the candidate is imported: the work of a call minus the call (take the
    input, copy it, convert and send arrays of the asked shapes), so that the evaluator
    can measure what moving a call's payload costs where no candidate code can run."""
    if "weight" in arrays:
        torch.from_numpy(arrays["weight"]).clone()
    fake = tuple(torch.zeros(shape, dtype=torch.int64) for shape in request["shapes"])
    channel.send(outbox, {"echo": True},
                 _as_arrays(fake, torch) if len(fake) == 3 else {})


def _remember(history, weight, request):
    """Append a window to the history, keeping the newest `history_windows`."""
    history.append(weight)
    del history[:max(0, len(history) - request.get("history_windows", 0))]


def serve(channel, inbox, outbox, args):
    """Answer echoes, then load the candidate named in `args` and answer its requests."""
    program_path, threads = args[0], int(args[1])
    sys.meta_path.insert(0, _BlockProjectImports())
    try:
        import torch

        torch.set_num_threads(threads)
        request, arrays = channel.receive(inbox)
        while request.get("op") == "echo":
            _echo(channel, outbox, request, arrays, torch)
            request, arrays = channel.receive(inbox)
        if request.get("op") != "load":
            return
        candidate = _load_module("candidate", program_path)
        rebalance = getattr(candidate, "rebalance_experts", None)
        if not callable(rebalance):
            raise AttributeError("the program defines no callable rebalance_experts")
        keywords = _keywords(rebalance)
    except EOFError:
        return
    except BaseException as exc:  # noqa: BLE001 - everything the candidate does is reported
        text, trace = _describe_error(exc)
        channel.send(outbox, {"error": f"loading the program failed: {text}", "trace": trace})
        return
    channel.send(outbox, {"ready": True, "keywords": keywords})
    history = []  # windows sent so far in this scenario, oldest first
    while True:
        try:
            request, arrays = channel.receive(inbox)
        except EOFError:
            return
        if request.get("op") not in ("place", "warmup", "observe"):
            return
        weight = arrays["weight"]
        if request.get("reset"):
            history.clear()
        if request["op"] == "observe":
            _remember(history, weight, request)
            channel.send(outbox, {"observed": True})
            continue
        extras = {}
        if "history" in keywords:
            extras["history"] = (np.stack(history) if history
                                 else np.zeros((0, *weight.shape), dtype=weight.dtype))
        if "previous" in keywords:
            extras["previous"] = arrays.get("previous")
        try:
            result = _call(request, weight, rebalance, torch, **extras)
        except BaseException as exc:  # noqa: BLE001
            text, trace = _describe_error(exc)
            channel.send(outbox, {"error": f"rebalance_experts raised {text}", "trace": trace})
            return
        if request["op"] == "warmup":
            channel.send(outbox, {"warmed": True})
            continue
        if "history" in keywords:
            _remember(history, weight, request)
        channel.send(outbox, {"placed": True}, result)
