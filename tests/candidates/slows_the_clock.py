"""Test candidate (timing attack): the honest 80 ms program; at import it replaces
time.perf_counter and time.monotonic with clocks running at 70% speed, and writes the slow
clock into the runner's local variable holding its clock (found on the call stack, written
back with ctypes), so any clock in this process under-reports by 30%."""

import ctypes
import sys
import time

_real_perf, _real_mono = time.perf_counter, time.monotonic
_origin = _real_perf()


def _slow_perf():
    return _origin + 0.7 * (_real_perf() - _origin)


def _slow_mono():
    return _real_mono() - 0.3 * (_real_perf() - _origin)


time.perf_counter, time.monotonic = _slow_perf, _slow_mono
_frame = sys._getframe()
while _frame is not None:
    if "clock" in _frame.f_locals and callable(_frame.f_locals["clock"]):
        _frame.f_locals["clock"] = _slow_perf
        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(_frame), ctypes.c_int(0))
    _frame = _frame.f_back
del _frame


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return honest_rebalance(weight, num_replicas, num_groups, num_nodes, num_gpus)
