"""Talking to a sandboxed candidate: its session, one request at a time, each answer
timed from this side (eplb/call_timing.py) and checked (eplb/placement.py).

A request is sent (`send_request`), and its answer read later (`read_answer`), so that the
evaluator can check the previous answer (`checked`) while the candidate works on this
one; `ask_placement` does the three in a row.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from eplb import colocation, placement
from eplb.call_timing import CallClock, CallTime, decoy
from eplb.config import TaskConfig
from eplb.placement import Scenario
from evolve.accounting import Snapshot
from evolve.sandbox import Sandbox, SandboxError

RUNNER = Path(__file__).with_name("candidate_runner.py")
# never readable by a candidate, wherever the project is installed
HARNESS_NAMES = ("eplb", "evolve", "evaluate.py", "run_evo.py", "initial.py", "policies")


class CandidateError(RuntimeError):
    """The candidate failed or produced an invalid placement; the message says how."""


@dataclass
class Progress:
    """Placements answered so far in one evaluation: for the message when it is too slow."""

    planned: int
    calls: int = 0
    seconds: float = 0.0

    def answered(self, seconds: float) -> None:
        self.calls += 1
        self.seconds += seconds

    def explain(self, error: SandboxError) -> str:
        """The error, and if the time ran out, how far the program got and at what pace."""
        if "time limit exceeded" not in str(error):
            return str(error)
        pace = f", {self.seconds / self.calls:.2f} s each" if self.calls else ""
        return (f"{error}\ntoo slow: {self.calls} of about {self.planned} placements "
                f"answered{pace}; a program needs at least one call per window within "
                "limits.timeout_s (and each window's calls within limits.call_timeout_s "
                "beyond timing.budget_s)")


@dataclass(frozen=True)
class Answer:
    """A placement the candidate returned for `window` (for the layers in `due`), timed
    but not yet checked."""

    window: int
    arrays: dict
    timed: CallTime
    due: np.ndarray
    late: bool  # the reply was there before this side looked for it


@contextlib.contextmanager
def candidate_session(program_path: str | os.PathLike, task: TaskConfig,
                      clock: CallClock | None = None) -> Iterator[tuple[Sandbox, list[str]]]:
    """The candidate loaded in its sandbox, and the optional arguments it asks for;
    `clock` is calibrated before the candidate is imported."""
    program = Path(program_path).resolve()
    args = [str(program), str(task.timing.torch_threads)]
    with Sandbox(RUNNER, args, task.limits, read_paths=(str(program),),
                 hide=HARNESS_NAMES) as box:
        if clock is not None:
            clock.calibrate(box)
        hello, _ = box.exchange({"op": "load"})
        if "error" in hello:
            raise CandidateError(f"{hello['error']}\n{hello.get('trace', '')}".strip())
        if clock is not None:
            clock.untimed(box.snapshot())
        yield box, hello.get("keywords", [])


def ask_placement(box: Sandbox, request: dict, arrays: dict, layers: int, experts: int,
                  scenario: Scenario, window: int, task: TaskConfig,
                  progress: Progress | None = None, clock: CallClock | None = None
                  ) -> tuple[np.ndarray, np.ndarray, CallTime]:
    """One placement from the candidate, checked: (phy2log, logcnt, the call's time)."""
    call = send_request(box, dict(request, op="place"), arrays, scenario, window)
    answer = read_answer(box, call, np.ones(layers, dtype=bool), scenario, task, progress,
                         clock or CallClock())
    return (*checked(answer.arrays, layers, experts, scenario, window), answer.timed)


@dataclass(frozen=True)
class _Call:
    """A request on its way: the window, the arrays sent, the accounting when it left."""

    window: int
    sent: dict
    start: Snapshot


def send_request(box: Sandbox, request: dict, arrays: dict, scenario: Scenario,
                 window: int) -> _Call:
    """Send one request, noting the kernel's accounting first."""
    start = box.snapshot()
    try:
        box.send(request, arrays)
    except SandboxError as exc:
        raise SandboxError(f"{exc} (scenario {scenario.name}, window {window})") from None
    return _Call(window, arrays, start)


def _reply(box: Sandbox, call: _Call, task: TaskConfig, scenario: Scenario):
    """The reply to `call` and the kernel's accounting: when it was sent (with the
    calling thread's own run-queue wait as of now, when it starts waiting: its work
    since the send was its own), after the reply (None if the child is gone), and, if
    the reply was already there when this side looked (it came while this side was
    busy), at that moment (else None)."""
    waiting = box.reply_waiting()
    try:
        looked = box.snapshot()
    except OSError:
        looked = None
    start = call.start if looked is None else \
        replace(call.start, own_queued_ns=looked.own_queued_ns)
    try:
        reply, arrays = box.receive(task.limits.call_timeout_s + task.timing.budget_s)
    except SandboxError as exc:
        raise SandboxError(f"{exc} (scenario {scenario.name}, window {call.window})"
                           ) from None
    try:
        end = box.snapshot()
    except OSError:
        end = None
    return reply, arrays, start, end, looked if waiting else None


def read_answer(box: Sandbox, call: _Call, due: np.ndarray, scenario: Scenario,
                task: TaskConfig, progress: Progress | None, clock: CallClock) -> Answer:
    """The candidate's answer to a place request, timed (CandidateError if it failed)."""
    reply, arrays, start, end, late = _reply(box, call, task, scenario)
    if progress is not None:
        progress.answered((end.wall_ns - start.wall_ns) / 1e9 if end else 0.0)
    if "error" in reply:
        raise _failed(reply, scenario, call.window)
    if end is None:
        raise SandboxError(f"the candidate's process ended after its reply (scenario "
                           f"{scenario.name}, window {call.window})")
    moved = sum(a.nbytes for a in (*call.sent.values(), *arrays.values()))
    return Answer(call.window, arrays, clock.charge(start, end, moved, late), due,
                  late is not None)


def _failed(reply: dict, scenario: Scenario, window: int) -> CandidateError:
    """The error a call on `window` reported, with its traceback."""
    return CandidateError(f"scenario {scenario.name}, window {window}: {reply['error']}\n"
                          f"{reply.get('trace', '')}".strip())


def checked(arrays: dict, layers: int, experts: int, scenario: Scenario,
            window: int) -> tuple[np.ndarray, np.ndarray]:
    """(phy2log, logcnt) as int64 from a valid reply; CandidateError naming every rule
    an invalid one breaks."""
    violations = placement.validate(arrays.get("phy2log"), arrays.get("log2phy"),
                                    arrays.get("logcnt"), layers, experts, scenario)
    if violations:
        listed = "\n  ".join(str(v) for v in violations)
        raise CandidateError(
            f"invalid placement (scenario {scenario.name}, window {window}):\n  {listed}")
    # logcnt is validated: equal to phy2log's replica counts
    return arrays["phy2log"].astype(np.int64), arrays["logcnt"].astype(np.int64)


def warm_up(box: Sandbox, request: dict, window: np.ndarray, scenario: Scenario, index: int,
            task: TaskConfig, clock: CallClock) -> None:
    """`timing.warmup` untimed calls on decoys of `window` (never the window itself);
    after the first, another only while they took less than `timing.budget_s`."""
    spent = 0.0
    for k in range(task.timing.warmup):
        if k and spent >= task.timing.budget_s:
            break
        call = send_request(box, dict(request, op="warmup"), {"weight": decoy(window, k)},
                            scenario, index)
        reply, _, start, end, _ = _reply(box, call, task, scenario)
        if "error" in reply:
            raise _failed(reply, scenario, index)
        spent += (end.wall_ns - start.wall_ns) / 1e9 if end else 0.0
        clock.untimed(end)


def observe_window(box: Sandbox, request: dict, window: np.ndarray, scenario: Scenario,
                   index: int, clock: CallClock | None = None) -> None:
    """Send a window the candidate only observes (for its history); nothing is called."""
    reply, _ = box.exchange(request, {"weight": window})
    if "error" in reply or not reply.get("observed"):
        raise CandidateError(f"scenario {scenario.name}, window {index}: the observe request "
                             f"failed: {reply.get('error', reply)}")
    if clock is not None:
        clock.observed()


def check_colocation(phy2log: np.ndarray, scenario: Scenario, task: TaskConfig,
                     window: int) -> None:
    """With placement_rules.colocated_replicas: error, refuse an expert twice on one GPU."""
    if task.placement_rules.colocated_replicas != "error":
        return
    found = colocation.first_colocated(phy2log, scenario.num_gpus)
    if found is not None:
        layer, device, expert = found
        total = int(colocation.colocated_replicas(phy2log, scenario.num_gpus).sum())
        raise CandidateError(
            f"invalid placement (scenario {scenario.name}, window {window}):\n  "
            f"[colocated-replicas] layer {layer}, device {device} holds expert {expert} "
            f"more than once ({total} colocated replicas in all; placement_rules."
            "colocated_replicas is 'error')")
