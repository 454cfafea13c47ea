"""Run untrusted code in a separate, killable, memory-limited process.

The child is a fresh Python interpreter in its own session (so the whole
process tree can be killed at once), with an address-space limit, no core
dumps, a scrubbed environment (no API keys or other secrets) and its
stdout/stderr sent to a log file, so printing garbage cannot disturb the
protocol. Parent and child talk over two private pipes in the format of
`evolve.channel`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from evolve.channel import ChannelError, enlarge_pipe, receive, send

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
TAG_VARIABLE = "EVOLVE_SANDBOX_TAG"
try:
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
except OSError:  # not Linux/glibc: the time limit and the group kill still apply
    _LIBC = None

SAFE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")


class SandboxError(RuntimeError):
    """The child failed: timed out, died, ran out of memory or broke the protocol."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed process."""

    timeout_s: float = 60.0
    memory_mb: int = 2048


def safe_environ(threads: int = 1) -> dict[str, str]:
    """A minimal environment: a few harmless variables, thread counts pinned."""
    env = {k: os.environ[k] for k in SAFE_ENV_KEYS if k in os.environ}
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    return env


class Sandbox:
    """One sandboxed child running `script` with `args`; use as a context manager.

    The child finds its channel in the environment: read from fd
    EVOLVE_SANDBOX_IN, write to fd EVOLVE_SANDBOX_OUT. The whole session shares
    one time budget (`limits.timeout_s` from start), checked on every exchange.
    """

    def __init__(self, script: Path, args: list[str], limits: Limits, threads: int = 1):
        self.limits = limits
        self.workdir = tempfile.TemporaryDirectory(prefix="sandbox-")
        self.log_path = Path(self.workdir.name) / "output.log"
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        env = safe_environ(threads)
        env["EVOLVE_SANDBOX_IN"], env["EVOLVE_SANDBOX_OUT"] = str(to_child_r), str(from_child_w)
        self.tag = env[TAG_VARIABLE] = uuid.uuid4().hex
        if _LIBC is not None:  # orphans of the candidate's tree are adopted by us, not init
            _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-I", str(script), *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir.name, env=env, pass_fds=(to_child_r, from_child_w),
                start_new_session=True, preexec_fn=self._apply_limits,
            )
        os.close(to_child_r)
        os.close(from_child_w)
        for fd in (self._to_child, self._from_child):
            enlarge_pipe(fd)
        self.deadline = time.monotonic() + limits.timeout_s

    def _apply_limits(self) -> None:
        """In the child before exec: memory and CPU limits, no core dumps, and death
        with the parent, so that a killed evaluator never leaves a candidate running."""
        memory = self.limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        cpu = int(self.limits.timeout_s) + 5
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def exchange(self, header: dict, arrays: dict[str, np.ndarray] | None = None):
        """Send one request and wait for the reply, within the session's time budget."""
        try:
            send(self._to_child, header, arrays)
        except EOFError as exc:
            raise SandboxError(self._death_reason(exc)) from None
        return self.receive()

    def receive(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Wait for the child's next message, within the session's time budget."""
        try:
            return receive(self._from_child, self.deadline)
        except TimeoutError:
            self.kill()
            raise SandboxError(
                f"time limit exceeded: killed after {self.limits.timeout_s:g} s") from None
        except (EOFError, ChannelError) as exc:
            raise SandboxError(self._death_reason(exc)) from None

    def _death_reason(self, exc: BaseException) -> str:
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
            return f"child broke the protocol ({exc}); killed"
        if code < 0:
            reason = f"killed by signal {signal.Signals(-code).name}"
        else:
            reason = f"exited with code {code}"
        if code == -signal.SIGKILL or "MemoryError" in self.output_tail():
            reason += f" (memory limit {self.limits.memory_mb} MB?)"
        return f"process {reason}; output: {self.output_tail() or '(none)'}"

    def output_tail(self, limit: int = 2000) -> str:
        """The last characters the child printed (stdout and stderr)."""
        try:
            data = self.log_path.read_bytes()[-limit:]
        except OSError:
            return ""
        return data.decode("utf-8", "replace").strip()

    def kill(self) -> None:
        """Kill the child, its process group, and every descendant, even one that left the
        group and lost its parent (adopted by this process, found by the sandbox's tag)."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for orphan in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if orphan.environ().get(TAG_VARIABLE) == self.tag:
                    orphan.kill()
                    orphan.wait(timeout=2)

    def close(self) -> None:
        """Kill the child at once (it holds nothing worth a graceful exit) and clean up."""
        self.kill()
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.workdir.cleanup()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
