"""A pre-warmed template process that forks sandboxed children in milliseconds.

Run by `evolve.sandbox` only, as `python -I -u -B forkserver.py CONTROL_FD MODULE...`: it
imports the given modules (torch, numpy: the slow part of starting a candidate) and
nothing of the task, holds no data and no secrets (its environment is the sandbox's
scrubbed one), and serves requests on the UNIX socket CONTROL_FD. Once imported, its
objects are frozen out of the garbage collector's way and its memory moved to huge
pages where the kernel can, so that a fork, and a child's exit, copy and free little.

It first answers `{"ready": true, "sys_path": [...]}`: the folders its imports come
from, which its children may read. Then:

- `spawn` (with three file descriptors: log, inbox, outbox): fork a child, which
  starts its own session, dies with this server (PDEATHSIG), sends its output to the
  log, sets the resource limits, takes the engine's `script` and `channel` modules
  (loaded here at the first request naming them, and again when their file changes;
  they only define things when loaded), confines itself (`jail.py`), sends
  `{"isolation": report}` on the outbox and only then calls
  `script.serve(channel, inbox, outbox, args)`, which runs untrusted code.
  Replies `{"pid": N}`.
- `wait` (pid, timeout): reap the child; replies `{"status": code}` (negative: killed
  by that signal) or `{"status": null}` if it is still running at the timeout.
- `kill` (pid, timeout): SIGKILL the child and everything below this server, then as
  `wait`.

The server is a child subreaper, so anything a child leaves behind stays its
descendant, and it dies with the process that started it. This file imports only
the standard library before the preloaded modules: it is loaded by path.
"""

import contextlib
import ctypes
import gc
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
MADV_COLLAPSE, HUGE_PAGE = 25, 1 << 21
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_CHILD_LISTS = os.path.exists(f"/proc/self/task/{os.getpid()}/children")  # Linux >= 3.5


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


JAIL = _load("_sandbox_jail", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "jail.py"))


_MODULES = {}  # path: (file signature, module), loaded here for every child


def _preload(name, path):
    """Load the module at `path` here, once (again if the file changed), so that every
    child inherits it; one that fails to load is left to the child, which logs why."""
    try:
        stat = os.stat(path)
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if _MODULES.get(path, (None,))[0] != signature:
            _MODULES.pop(path, None)
            _MODULES[path] = (signature, _load(name, path))
            gc.freeze()
    except BaseException:  # noqa: BLE001 - the child loads it again and reports the error
        pass


def _module(name, path):
    """In a child: the module at `path`, as preloaded by the server, or loaded now."""
    return _MODULES[path][1] if path in _MODULES else _load(name, path)


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
        for name in ("TMPDIR", "HOME"):  # not update(): its Mapping check copies ~100 pages
            os.environ[name] = scratch
        tempfile.tempdir = scratch
        channel = _module("_sandbox_channel", request["channel"])
        script = _module("_sandbox_script", request["script"])
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


def _kill_descendants(pid):
    """SIGKILL child `pid`'s process group at once, then every process below this server,
    parents before their children, until a pass finds none it has not killed (one that
    dies hands its children to this server, a subreaper)."""
    with contextlib.suppress(ChildProcessError, ProcessLookupError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)  # still ours?
        os.killpg(pid, signal.SIGKILL)
    killed, fresh = set(), True
    while fresh:
        stack, fresh = _children(os.getpid()), False
        while stack:
            below = stack.pop()
            if below not in killed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(below, signal.SIGKILL)
                killed.add(below)
                fresh = True
            stack += _children(below)


def _children(pid):
    """The pids of `pid`'s children: the kernel's lists of each thread's children, or
    else every process's parent."""
    if not _CHILD_LISTS:
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(p) == pid]
    found = []
    with contextlib.suppress(OSError):  # the process is gone
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), \
                    open(f"/proc/{pid}/task/{thread}/children") as listing:
                found += map(int, listing.read().split())
    return found


def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _reap_orphans():
    """Collect any adopted descendant that has exited (this server is a subreaper)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _prepare_to_fork():
    """Make each fork, and each child's exit, cheap: the imported objects are frozen out
    of the garbage collector's way (a child's collections then copy none of their pages)
    and, where the kernel can (Linux >= 6.1), the private memory is moved to huge pages,
    so that fork copies one page-table entry per 2 MB instead of 512."""
    gc.collect()
    gc.freeze()
    with open("/proc/self/maps") as maps:
        regions = [line.split() for line in maps]
    for fields in regions:
        if fields[1] == "rw-p" and (len(fields) == 5 or fields[5] == "[heap]"):
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            start, end = -(-start // HUGE_PAGE) * HUGE_PAGE, end // HUGE_PAGE * HUGE_PAGE
            if end > start:
                _libc.madvise(start, end - start, MADV_COLLAPSE)  # best effort


def main():
    control = socket.socket(fileno=int(sys.argv[1]))  # AF_UNIX, SOCK_SEQPACKET
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    for name in sys.argv[2:]:
        __import__(name)
    _prepare_to_fork()
    server_pid = os.getpid()
    runtime = [path for path in sys.path if os.path.isdir(path)]
    control.send(json.dumps({"ready": True, "sys_path": runtime}).encode())
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1 << 16, 3)
        if not message:
            return
        request = json.loads(message)
        if request["op"] == "spawn" and len(fds) == 3:
            _preload("_sandbox_channel", request["channel"])
            _preload("_sandbox_script", request["script"])
            pid = os.fork()
            if pid == 0:
                control.close()
                _child(request, fds, server_pid)
            reply = {"pid": pid}
        elif request["op"] in ("wait", "kill"):
            if request["op"] == "kill":
                _kill_descendants(request["pid"])
            reply = {"status": _wait(request["pid"], request["timeout"])}
        else:
            reply = {"error": f"bad request {request['op']!r} with {len(fds)} descriptors"}
        for fd in fds:
            os.close(fd)
        control.send(json.dumps(reply).encode())


if __name__ == "__main__":
    main()
