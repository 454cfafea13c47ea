"""A pre-warmed template process that forks sandboxed children in milliseconds.

Run by `evolve.sandbox` only, as `python -I -u -B forkserver.py CONTROL_FD MODULE...`: it
imports the given modules (torch, numpy: the slow part of starting a candidate) and
nothing of the harness or the task, holds no data and no secrets (its environment is
the sandbox's scrubbed one), and serves requests on the UNIX socket CONTROL_FD.

It first answers `{"ready": true, "sys_path": [...]}`: the folders its imports come
from, which its children may read. Then:

- `spawn` (with three file descriptors: log, inbox, outbox): fork a child, which
  starts its own session, dies with this server (PDEATHSIG), sends its output to the
  log, sets the resource limits, loads the engine's `script` and `channel` modules,
  confines itself (`jail.py`), sends `{"isolation": report}` on the outbox and only
  then calls `script.serve(channel, inbox, outbox, args)`, which runs untrusted code.
  Replies `{"pid": N}`.
- `wait` (pid, timeout): reap the child; replies `{"status": code}` (negative: killed
  by that signal) or `{"status": null}` if it is still running at the timeout.

The server is a child subreaper, so anything a child leaves behind stays its
descendant, and it dies with the process that started it. This file imports only
the standard library before the preloaded modules: it is loaded by path.
"""

import contextlib
import ctypes
import importlib.util
import json
import os
import resource
import select
import signal
import socket
import sys
import tempfile
import traceback

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
_libc = ctypes.CDLL(None, use_errno=True)


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


JAIL = _load("_sandbox_jail", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "jail.py"))


def _child(request, fds, server_pid):
    """In the forked child: never returns."""
    code = 1
    try:
        log, inbox, outbox = fds
        os.setsid()
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server_pid:  # the server died before PDEATHSIG was set
            os._exit(1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, min(inbox, outbox))
        os.closerange(min(inbox, outbox) + 1, max(inbox, outbox))
        os.closerange(max(inbox, outbox) + 1, 1 << 16)
        _set_limits(request["memory_mb"], request["cpu_s"])
        scratch = request["scratch"]
        os.chdir(scratch)
        os.environ.update(TMPDIR=scratch, HOME=scratch)
        tempfile.tempdir = scratch
        channel = _load("_sandbox_channel", request["channel"])
        script = _load("_sandbox_script", request["script"])
        report = JAIL.apply(request["read_paths"], [scratch])
        channel.send(outbox, {"isolation": report})
        if report["level"] == "full" or not request["required"]:
            script.serve(channel, inbox, outbox, request["args"])
        code = 0
    except BaseException:  # noqa: BLE001 - reported in the log, read by the engine
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _set_limits(memory_mb, cpu_s):
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))


def _wait(pid, timeout):
    """Exit status of child `pid` (negative: signal), or None if it outlives `timeout`."""
    with contextlib.suppress(OSError):  # without pidfd (Linux < 5.3) the wait blocks
        handle = os.pidfd_open(pid)
        try:
            if not select.select([handle], [], [], timeout)[0]:
                return None
        finally:
            os.close(handle)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return -signal.SIGKILL
    _reap_orphans()
    return os.waitstatus_to_exitcode(status)


def _reap_orphans():
    """Collect any adopted descendant that has exited (this server is a subreaper)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def main():
    control = socket.socket(fileno=int(sys.argv[1]))  # AF_UNIX, SOCK_SEQPACKET
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    for name in sys.argv[2:]:
        __import__(name)
    server_pid = os.getpid()
    runtime = [path for path in sys.path if os.path.isdir(path)]
    control.send(json.dumps({"ready": True, "sys_path": runtime}).encode())
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1 << 16, 3)
        if not message:
            return
        request = json.loads(message)
        if request["op"] == "spawn" and len(fds) == 3:
            pid = os.fork()
            if pid == 0:
                control.close()
                _child(request, fds, server_pid)
            reply = {"pid": pid}
        elif request["op"] == "wait":
            reply = {"status": _wait(request["pid"], request["timeout"])}
        else:
            reply = {"error": f"bad request {request['op']!r} with {len(fds)} descriptors"}
        for fd in fds:
            os.close(fd)
        control.send(json.dumps(reply).encode())


if __name__ == "__main__":
    main()
