"""Run untrusted code in a jailed, killable, memory-limited process, started in milliseconds.

Each child is forked from a pre-warmed template (`evolve/forkserver.py`, one per
concurrent sandbox of this process, reused), which has imported torch and numpy and,
once asked for them, the child's `script` and the channel, nothing else, and holds no
data and no secrets. Before any untrusted code runs, the child starts its own
session, dies with the template (which dies with this process), gets an
address-space and a CPU-time limit and no core dumps, sends its output to a log file
(so printing garbage cannot disturb the protocol) and confines itself
(`evolve/jail.py`): it may read only what the interpreter and the installed packages
need plus the paths it is given, write only its scratch folder, and may not open
sockets, start processes, trace or signal other processes.

The first message on the channel is the jail's report (`Sandbox.isolation`); with
`limits.isolation: required` a child that is not fully isolated is refused before
its code runs. Parent and child then talk over two private pipes in the format of
`evolve.channel`. The whole session has one time budget (`limits.timeout_s`), and
each exchange may also be given its own (`exchange(..., timeout_s=)`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import psutil

from evolve import accounting, jail
from evolve.channel import ChannelError, enlarge_pipe, receive, send
from evolve.scratch import make_scratch

SAFE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "VIRTUAL_ENV")
PRELOAD = ("numpy", "torch")  # what the template imports once, for every child
FORKSERVER = Path(__file__).with_name("forkserver.py")
CHANNEL = Path(__file__).with_name("channel.py")
# read-only for every child: system libraries and CPU facts that the runtime reads lazily
SYSTEM_READ_PATHS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib",
                     "/etc/ld.so.cache", "/usr/share/zoneinfo", "/etc/localtime",
                     "/proc/cpuinfo", "/sys/devices/system/cpu", "/dev/null", "/dev/urandom")
START_TIMEOUT_S = 120.0  # a template's first import of torch on a loaded machine


class SandboxError(RuntimeError):
    """The child failed: timed out, died, ran out of memory or broke the protocol."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed process.

    timeout_s bounds the whole session, call_timeout_s one exchange's work beyond its
    timing budget; isolation `required` refuses to run code that the kernel cannot
    fully confine, `best_effort` runs it with what the kernel offers (and says so)."""

    timeout_s: float = 60.0
    call_timeout_s: float = 30.0
    memory_mb: int = 2048
    isolation: Literal["required", "best_effort"] = "best_effort"


def safe_environ(threads: int = 1) -> dict[str, str]:
    """A minimal environment: a few harmless variables, thread counts pinned."""
    env = {k: os.environ[k] for k in SAFE_ENV_KEYS if k in os.environ}
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    return env


def isolation_warning(limits: Limits) -> str | None:
    """Before a run: None if this kernel can jail candidates fully, else a one-line
    warning; raises SandboxError instead if `limits.isolation` is `required`."""
    report = jail.probe()
    if report["level"] == "full":
        return None
    if limits.isolation == "required":
        raise SandboxError(f"limits.isolation is 'required' but this machine offers "
                           f"{jail.describe(report)}; set limits.isolation=best_effort to "
                           "run anyway")
    return (f"warning: candidates run with {jail.describe(report)}; each program's "
            "metrics record the level reached (limits.isolation=required refuses to run)")


class ForkServer:
    """One template process and the control socket to it."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control = ours
        self.process = subprocess.Popen(
            # -I ignores PYTHON* variables, so: -u, unbuffered output (a child is killed,
            # not exited: nothing may wait in a buffer), -B, no bytecode files written
            [sys.executable, "-I", "-u", "-B", str(FORKSERVER), str(theirs.fileno()),
             *PRELOAD],
            stdin=subprocess.DEVNULL, env=safe_environ(1), pass_fds=(theirs.fileno(),),
            start_new_session=True, preexec_fn=functools.partial(_die_with, os.getpid()))
        theirs.close()
        self._ready = False
        self.read_paths: list[str] = []

    def wait_ready(self) -> None:
        """Wait (once) for the template to finish its imports and say where they come from."""
        if not self._ready:
            hello = self._reply(START_TIMEOUT_S)
            self.read_paths = hello["sys_path"]
            self._ready = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def _reply(self, timeout: float | None) -> dict:
        self._control.settimeout(timeout)
        try:
            data = self._control.recv(1 << 16)
        except (TimeoutError, OSError) as exc:
            raise SandboxError(f"the sandbox template did not answer: {exc}") from None
        if not data:
            raise SandboxError("the sandbox template died: "
                               f"exit code {self.process.poll()}")
        return json.loads(data)

    def request(self, message: dict, fds: tuple[int, ...] = (),
                timeout: float | None = 30.0) -> dict:
        """Send one request (with file descriptors) and return the reply."""
        self.wait_ready()
        socket.send_fds(self._control, [json.dumps(message).encode()], list(fds))
        return self._reply(timeout)

    def kill_children(self) -> None:
        """Kill everything below the template (it serves one sandbox at a time)."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()

    def close(self) -> None:
        self.kill_children()
        with contextlib.suppress(OSError):
            self._control.close()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()


def _die_with(parent: int) -> None:
    """In the template before exec: die with `parent`, even if it died a moment ago."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


_IDLE: list[ForkServer] = []
_IDLE_LOCK = threading.Lock()


def prestart() -> None:
    """Start a template now, so that its imports overlap with the caller's own work."""
    with _IDLE_LOCK:
        if not any(server.alive() for server in _IDLE):
            _IDLE.append(ForkServer())


def _acquire() -> ForkServer:
    with _IDLE_LOCK:
        while _IDLE:
            server = _IDLE.pop()
            if server.alive():
                return server
            server.close()
    return ForkServer()


def _release(server: ForkServer) -> None:
    with _IDLE_LOCK:
        _IDLE.append(server)


def shutdown_templates() -> None:
    """Stop the idle templates (they also die with this process)."""
    with _IDLE_LOCK:
        while _IDLE:
            _IDLE.pop().close()


class Sandbox:
    """One sandboxed child running `script`'s `serve(channel, inbox, outbox, args)`;
    use as a context manager. It may read `read_paths` besides the runtime, minus any
    runtime entry named in `hide` (e.g. the harness's own packages)."""

    def __init__(self, script: Path, args: list[str], limits: Limits,
                 read_paths: tuple[str, ...] = (), hide: tuple[str, ...] = ("evolve",)):
        self.limits = limits
        self.workdir = make_scratch("sandbox-")
        self.log_path = Path(self.workdir.name) / "output.log"
        self.status: int | None = None
        self.pid: int | None = None
        self._server = _acquire()
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        for fd in (self._to_child, self._from_child):
            enlarge_pipe(fd)
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._server.wait_ready()
            request = {
                "op": "spawn", "script": str(script), "channel": str(CHANNEL),
                "args": args, "scratch": self.workdir.name,
                "memory_mb": limits.memory_mb, "cpu_s": int(limits.timeout_s) + 5,
                "read_paths": _read_paths(self._server.read_paths, read_paths, hide),
                "required": limits.isolation == "required"}
            self.pid = self._server.request(request, (log, to_child_r, from_child_w))["pid"]
        except BaseException:
            self._server.close()
            self.workdir.cleanup()
            raise
        finally:
            for fd in (log, to_child_r, from_child_w):
                os.close(fd)
        self.deadline = time.monotonic() + limits.timeout_s
        try:
            self.isolation = self._isolation_report()
        except BaseException:
            self.close()
            raise

    def _isolation_report(self) -> dict:
        header, _ = self.receive()
        report = header.get("isolation")
        if not isinstance(report, dict):
            raise SandboxError(f"the sandbox sent no isolation report: {header}")
        if self.limits.isolation == "required" and report.get("level") != "full":
            raise SandboxError(f"limits.isolation is 'required' but the sandbox reached "
                               f"{jail.describe(report)}")
        return report

    def exchange(self, header: dict, arrays: dict[str, np.ndarray] | None = None,
                 timeout_s: float | None = None):
        """Send one request and wait for the reply, within the session's time budget and,
        if given, `timeout_s` from now."""
        self.send(header, arrays)
        return self.receive(timeout_s)

    def send(self, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Send one message to the child (SandboxError if it is gone)."""
        try:
            send(self._to_child, header, arrays)
        except EOFError as exc:
            raise SandboxError(self._death_reason(exc)) from None

    def reply_waiting(self) -> bool:
        """Whether the child has written something not yet received."""
        return bool(select.select([self._from_child], [], [], 0)[0])

    def receive(self, timeout_s: float | None = None) -> tuple[dict, dict[str, np.ndarray]]:
        """Wait for the child's next message, within the session's time budget and, if
        given, `timeout_s` from now."""
        deadline = self.deadline if timeout_s is None else \
            min(self.deadline, time.monotonic() + timeout_s)
        try:
            return receive(self._from_child, deadline)
        except TimeoutError:
            self.kill()
            tail = self.output_tail()
            output = f"; output: {tail}" if tail else ""
            if deadline < self.deadline:
                raise SandboxError(f"call time limit exceeded: no answer within "
                                   f"{timeout_s:g} s; killed{output}") from None
            raise SandboxError(f"time limit exceeded: killed after "
                               f"{self.limits.timeout_s:g} s{output}") from None
        except (EOFError, ChannelError) as exc:
            raise SandboxError(self._death_reason(exc)) from None

    def _death_reason(self, exc: BaseException) -> str:
        code = self._wait(2.0)
        if code is None:
            self.kill()
            return f"child broke the protocol ({exc}); killed"
        if code < 0:
            reason = f"killed by signal {signal.Signals(-code).name}"
        else:
            reason = f"exited with code {code}"
        if code == -signal.SIGKILL or "MemoryError" in self.output_tail():
            reason += f" (memory limit {self.limits.memory_mb} MB?)"
        return f"process {reason}; output: {self.output_tail() or '(none)'}"

    def _wait(self, timeout: float, kill: bool = False) -> int | None:
        """The child's exit status (reaped by the template, which first kills everything
        below it if `kill`), or None if still running."""
        if self.status is None and self.pid is not None:
            try:
                self.status = self._server.request(
                    {"op": "kill" if kill else "wait", "pid": self.pid, "timeout": timeout},
                    timeout=timeout + 30)["status"]
            except SandboxError:  # the template is gone (and the child with it) or stuck
                self._server.kill_children()
                self.status = -signal.SIGKILL
        return self.status

    def snapshot(self) -> accounting.Snapshot:
        """The kernel's accounting of the child now (evolve/accounting.py); read here,
        so nothing the child runs can change it. OSError if the child is gone."""
        return accounting.snapshot(self.pid)

    def output_tail(self, limit: int = 2000) -> str:
        """The last characters the child printed (stdout and stderr)."""
        try:
            data = self.log_path.read_bytes()[-limit:]
        except OSError:
            return ""
        return data.decode("utf-8", "replace").strip()

    def kill(self) -> None:
        """Kill the child and anything it left behind, and reap it."""
        self._wait(30.0, kill=True)

    def close(self) -> None:
        """Kill the child at once (it holds nothing worth a graceful exit) and clean up;
        the template goes back to the idle pool."""
        if self._server is None:
            return
        self.kill()
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.workdir.cleanup()
        server, self._server = self._server, None
        if server.alive():
            _release(server)
        else:
            server.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_paths(runtime: list[str], extra: tuple[str, ...], hide: tuple[str, ...]
                ) -> list[str]:
    """The runtime's folders (each listed entry by entry where it holds a hidden name),
    system libraries, and `extra`."""
    paths: list[str] = []
    for folder in runtime:
        entries = _entries(folder)
        if any(name in entries for name in hide):
            paths += [os.path.join(folder, e) for e in entries if e not in hide]
        else:
            paths.append(folder)
    return [*paths, *SYSTEM_READ_PATHS, *map(str, extra)]


def _entries(folder: str) -> tuple[str, ...]:
    try:
        return _listing(folder, os.stat(folder).st_mtime_ns)
    except OSError:
        return ()


@functools.lru_cache(maxsize=64)
def _listing(folder: str, modified_ns: int) -> tuple[str, ...]:
    """A folder's entries, listed again only when the folder changes."""
    return tuple(sorted(os.listdir(folder)))
