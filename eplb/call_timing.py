"""How a candidate's calls are timed: on the evaluator's side, never by the candidate.

The rule (README, "Metrics"):
- Each window's placement is asked for in an exchange of its own, and that call is
  the only one made on the window: no timed call is on an input the candidate has
  already been given, so a cache of inputs gains nothing (`time_ms` is the median
  over windows). State carried from one window to the next stays allowed.
- Warm-up calls (`timing.warmup`, before a scenario's first placement, within
  `timing.budget_s`) are made on decoys: random loads of the window's shape and
  magnitude, never a window. They are not timed and their result is dropped.
- A call's figures come from the evaluator's clock and the kernel's accounting of
  the child (evolve/accounting.py), never from the child's messages:
    cpu_ms  = the child's CPU time, all threads (exited ones included), since the
              reply to the previous call: work left running in a thread between calls
              is charged to the next one;
    wall_ms = the round trip, less the time the child's main thread and the
              evaluator's thread waited for a CPU (so a loaded machine does not
              inflate it; the waits may overlap, so it can come out low), the
              evaluator's counted only from when it starts waiting for the reply (it
              checks the previous window meanwhile: its own work);
  each less the same figure for an echo, an exchange with the same payload answered
  before the candidate was imported (so no candidate code could influence it), and
    time_ms = max(cpu_ms, wall_ms): a program that runs threads is charged their
              total CPU, one that waits is charged its wall time, and a low wall
              figure never undercuts the CPU the call used.
The evaluator checks a window while the candidate works on the next (eplb/evaluator.py).
A reply that came (even in part) before it had finished is charged its CPU time and,
as wall time, only the wait from when the evaluator looked for it: the round trip would
charge the evaluator's own work (or a pause of its process) to the call, and a child
that writes part of its reply early to stop the wall clock is still charged the rest
of its wait. From then on the evaluator checks first, so the other calls are timed
whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evolve.accounting import Snapshot
from evolve.sandbox import Sandbox

ECHOES = 3  # timed echoes per payload shape (after one untimed); the least counts
DECOY_SEED = 14


@dataclass(frozen=True)
class CallTime:
    """The figures of one timed call, in milliseconds (see the module docstring)."""

    time_ms: float
    cpu_ms: float
    wall_ms: float


@dataclass(frozen=True)
class _Cost:
    """Seconds an exchange costs without a call: fixed + per_byte * bytes moved (both
    ways), for the child's CPU and for the wall clock."""

    cpu_s: float = 0.0
    wall_s: float = 0.0
    cpu_per_byte: float = 0.0
    wall_per_byte: float = 0.0

    def cpu(self, moved: int) -> float:
        return self.cpu_s + self.cpu_per_byte * moved

    def wall(self, moved: int) -> float:
        return self.wall_s + self.wall_per_byte * moved


def reply_shapes(layers: int, experts: int, replicas: int, width: int) -> list[list[int]]:
    """Shapes like a placement's (phy2log, log2phy with `width` columns, logcnt)."""
    return [[layers, replicas], [layers, experts, width], [layers, experts]]


def decoy(window: np.ndarray, index: int) -> np.ndarray:
    """Warm-up input `index` for `window`: random loads of its shape, dtype and mean,
    otherwise unrelated to it (a decoy must tell the candidate nothing of the window)."""
    rng = np.random.default_rng([DECOY_SEED, index])
    high = 2 * max(1, int(window.mean())) + 1
    return rng.integers(0, high, size=window.shape).astype(window.dtype)


class CallClock:
    """Charges each timed call of one sandbox session; see the module docstring."""

    def __init__(self, shape: tuple[int, int, int] | None = None) -> None:
        self.shape = shape  # (layers, experts, replicas) of the calls to come
        self.place_cost = self.observe_cost = _Cost()
        self.since: Snapshot | None = None  # end of the last reply charged or untimed
        self.observes = 0  # observe exchanges since then

    def calibrate(self, box: Sandbox) -> None:
        """Before the candidate is imported: what exchanges cost without a call, as a
        line through echoes of a small and a large placement (a reply's log2phy width
        is the candidate's choice, so its cost is charged by size)."""
        if self.shape is None:
            return
        layers, experts, replicas = self.shape
        narrow = math.ceil(replicas / experts) + 1
        small, large = (_echo(box, (layers, experts),
                              reply_shapes(layers, experts, replicas, width))
                        for width in (narrow, 4 * narrow))
        self.place_cost = _line(small, large)
        cpu, wall, _ = _echo(box, (layers, experts), [])
        self.observe_cost = _Cost(cpu, wall)

    def untimed(self, end: Snapshot | None) -> None:
        """An exchange ended whose calls are not charged (ready, warm-up)."""
        self.since, self.observes = end, 0

    def observed(self) -> None:
        """An observe exchange happened (its payload is not charged to the next call)."""
        self.observes += 1

    def charge(self, start: Snapshot, end: Snapshot, moved: int,
               looked: Snapshot | None = None) -> CallTime:
        """The figures of the call whose exchange ran from `start` to `end`, moving
        `moved` bytes of arrays both ways; `looked`: the reply was already there (part
        of it at least) when this side looked for it, at `looked`, so the round trip
        includes this side's own work and only the wait from `looked` on is the call's
        for sure."""
        since = self.since or start
        cpu = (end.cpu_since(since) - self.place_cost.cpu(moved)
               - self.observes * self.observe_cost.cpu_s)
        wall = end.wall_since(looked or start) - self.place_cost.wall(moved)
        self.untimed(end)
        cpu, wall = max(0.0, cpu), max(0.0, wall)
        return CallTime(time_ms=1000 * max(cpu, wall), cpu_ms=1000 * cpu, wall_ms=1000 * wall)


def _echo(box: Sandbox, weight_shape: tuple[int, int], shapes: list
          ) -> tuple[float, float, int]:
    """(cpu s, wall s, bytes moved) of an echo: the least of ECHOES, after an untimed one."""
    weight = np.zeros(weight_shape, dtype=np.int64)
    samples = []
    for round_ in range(ECHOES + 1):
        start = box.snapshot()
        box.exchange({"op": "echo", "shapes": shapes}, {"weight": weight})
        end = box.snapshot()
        if round_:
            samples.append((end.cpu_since(start), end.wall_since(start)))
    moved = weight.nbytes + sum(8 * math.prod(shape) for shape in shapes)
    return min(s[0] for s in samples), min(s[1] for s in samples), moved


def _line(small: tuple[float, float, int], large: tuple[float, float, int]) -> _Cost:
    """The cost line through two echoes (never falling with size, never negative)."""
    extra = large[2] - small[2]
    cpu_per_byte = max(0.0, (large[0] - small[0]) / extra)
    wall_per_byte = max(0.0, (large[1] - small[1]) / extra)
    return _Cost(cpu_s=max(0.0, small[0] - cpu_per_byte * small[2]),
                 wall_s=max(0.0, small[1] - wall_per_byte * small[2]),
                 cpu_per_byte=cpu_per_byte, wall_per_byte=wall_per_byte)
