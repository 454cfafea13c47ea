"""Test candidate (timing attack): the honest 80 ms program, but the work for a new input
runs in a background thread started by the call that brought it, left running after the
reply; the next new input's call collects it and returns that (one window late, like a
forecast). A repeated input is answered at once from the cache. The thread's CPU must be
charged to some call."""

import hashlib
import threading

_cache = {}  # hash of an input -> the placement returned for it
_pending = []  # [thread, result holder] of the latest new input


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    args = (num_replicas, num_groups, num_nodes, num_gpus)
    key = hashlib.sha256(weight.numpy().tobytes()).hexdigest()
    if key in _cache:
        return _cache[key]
    if _pending:
        thread, holder = _pending.pop()
        thread.join()
        result = holder[0]
    else:
        result = honest_rebalance(weight, *args)
    holder, window = [], weight.clone()
    thread = threading.Thread(target=lambda: holder.append(honest_rebalance(window, *args)),
                              daemon=True)
    thread.start()
    _pending.append((thread, holder))
    _cache[key] = result
    return result
