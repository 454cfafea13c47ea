"""Test candidate (timing attack): the honest 80 ms program; at import it walks up the call
stack (or searches the garbage collector) to the runner's `channel` module and wraps its
`send`, so that any per-call times in a message become 0.1 ms."""

import gc
import sys
import types


def _find_channel():
    frame = sys._getframe()
    while frame is not None:
        found = frame.f_locals.get("channel")
        if isinstance(found, types.ModuleType) and hasattr(found, "send"):
            return found
        frame = frame.f_back
    for obj in gc.get_objects():
        if isinstance(obj, types.ModuleType) and obj.__name__.endswith("channel"):
            return obj
    raise RuntimeError("no channel found")


_channel = _find_channel()
_real_send = _channel.send


def _forged_send(fd, header, arrays=None):
    if "times" in header:
        header = dict(header, times=[0.0001] * len(header["times"]))
    return _real_send(fd, header, arrays)


_channel.send = _forged_send


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return honest_rebalance(weight, num_replicas, num_groups, num_nodes, num_gpus)
