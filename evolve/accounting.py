"""What the kernel says a sandboxed child has used, read from the parent's side.

Nothing here asks the child anything, so nothing the child runs can change it:

- the child's CPU time, all its threads together, including threads that have
  already exited, in nanoseconds: the process CPU clock (`clock_getcpuclockid`),
  which Linux lets any process read for any other;
- how long the child's main thread waited on a run queue (runnable, but the CPU
  was busy with someone else): `/proc/<pid>/schedstat`, second field, ns;
- the same wait for the calling thread (`/proc/thread-self/schedstat`).

A wall-clock interval minus both waits is at most what the exchange would have
taken on an idle machine: the waits can overlap (a parent preempted by the child it
has just woken waits while the child computes), so it can be less. Pair it with the
CPU time, which it cannot undercut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

CPUCLOCK_SCHED = 2  # the process clock that counts every thread's runtime (Linux ABI)


def _process_cpu_clock(pid: int) -> int:
    """The clock id of process `pid`'s CPU time (what clock_getcpuclockid returns)."""
    return ((~pid) << 3) | CPUCLOCK_SCHED


def _run_delay_ns(path: str) -> int:
    """Nanoseconds the task spent runnable but waiting for a CPU (0 if not accounted)."""
    try:
        with open(path, "rb") as f:
            fields = f.read().split()
        return int(fields[1])
    except (OSError, IndexError, ValueError):
        return 0


@dataclass(frozen=True)
class Snapshot:
    """One reading: the parent's wall clock and the kernel's accounting, in ns."""

    wall_ns: int
    cpu_ns: int         # the child's CPU time, all threads, exited ones included
    queued_ns: int      # the child's main thread: time waiting on a run queue
    own_queued_ns: int  # the calling thread: the same

    def wall_since(self, earlier: Snapshot) -> float:
        """Seconds of wall time since `earlier`, less the time either side (the child's
        main thread, the calling thread) waited for a CPU."""
        waited = (self.queued_ns - earlier.queued_ns) + (self.own_queued_ns
                                                         - earlier.own_queued_ns)
        return max(0, self.wall_ns - earlier.wall_ns - waited) / 1e9

    def cpu_since(self, earlier: Snapshot) -> float:
        """Seconds of the child's CPU time (all threads) since `earlier`."""
        return (self.cpu_ns - earlier.cpu_ns) / 1e9


def snapshot(pid: int) -> Snapshot:
    """Read the clocks for child `pid` (OSError if it is gone)."""
    return Snapshot(wall_ns=time.perf_counter_ns(),
                    cpu_ns=time.clock_gettime_ns(_process_cpu_clock(pid)),
                    queued_ns=_run_delay_ns(f"/proc/{pid}/schedstat"),
                    own_queued_ns=_run_delay_ns("/proc/thread-self/schedstat"))
