"""Hostile candidates against the jail: each attack must fail inside the candidate.

Each attack is a few lines appended to the baseline program and run the way a user
runs it, `python evaluate.py`, with an API key in the evaluator's environment, a
trace given on the command line, and a listener on 127.0.0.1. An attack that works
raises, so the evaluation fails and names it; one that is refused prints `ATTACK
name: denied ...`. The attacker must still score exactly what the baseline scores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from candidate_helpers import INITIAL
from cli_helpers import ROOT, SMALL_TASK, write_task

from eplb.synthetic import SyntheticSpec, generate
from evolve import jail, sandbox

REAL_LEVEL = jail.probe()["level"]
FULL = REAL_LEVEL == "full"
needs_jail = pytest.mark.skipif(not FULL, reason=f"kernel offers {jail.describe(jail.probe())}")
SECRET = "sk-jail-test-0123456789"

ATTACKS = '''
import ctypes, os, socket, sys

def _attack(name, attempt):
    try:
        outcome = attempt()
    except OSError as exc:
        print(f"ATTACK {name}: denied {type(exc).__name__}", flush=True)
        return
    if outcome:
        raise RuntimeError(f"ATTACK {name} succeeded: {outcome}")
    print(f"ATTACK {name}: nothing found", flush=True)

def _read_secrets():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/environ", "rb") as handle:
                    if b"OPENAI_API_KEY" in handle.read():
                        found.append(pid)
            except OSError:
                pass
    return found

def _read(path):
    with open(path, "rb") as handle:
        return f"read {len(handle.read())} bytes of {path}"

def _write(path):
    with open(path, "w") as handle:
        handle.write("tampered")
    return f"wrote {path}"

def _connect():
    with socket.create_connection(("127.0.0.1", PORT), timeout=2):
        return "connected to 127.0.0.1"

def _udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        return f"sent {udp.sendto(b'x', ('127.0.0.1', PORT))} bytes"

def _ptrace():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, os.getppid(), 0, 0) == 0:  # PTRACE_ATTACH
        return "attached to the parent"
    raise OSError(ctypes.get_errno(), "ptrace")

def _signal(pid):
    os.kill(pid, 0)
    return f"may signal {pid}"

def _fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return f"forked {pid}"

_attack("read_secret", _read_secrets)
_attack("read_source", lambda: _read(PROJECT + "/eplb/synthetic.py"))
_attack("read_task", lambda: _read(PROJECT + "/configs/task/eplb.yaml"))
_attack("read_trace", lambda: _read(TRACE))
_attack("read_results", lambda: _read(RESULTS + "/previous.json"))
_attack("read_home", lambda: os.listdir(os.path.expanduser("~root")))
_attack("tamper", lambda: _write(PROJECT + "/tampered-by-candidate.txt"))
_attack("tamper_tmp", lambda: _write("/tmp/tampered-by-candidate.txt"))
_attack("phone_tcp", _connect)
_attack("phone_udp", _udp)
_attack("ptrace", _ptrace)
_attack("parent_memory", lambda: _read(f"/proc/{os.getppid()}/mem"))
_attack("signal_parent", lambda: _signal(os.getppid()))
_attack("signal_everyone", lambda: _signal(-1))
_attack("fork", _fork)
'''
ATTACK_NAMES = ["read_secret", "read_source", "read_task", "read_trace", "read_results",
                "read_home", "tamper", "tamper_tmp", "phone_tcp", "phone_udp", "ptrace",
                "parent_memory", "signal_parent", "signal_everyone", "fork"]


def _evaluate(program: Path, folder: Path, trace: Path, name: str) -> tuple[dict, str]:
    results = folder / name
    task = write_task(folder)
    done = subprocess.run(
        [sys.executable, "evaluate.py", "--program_path", str(program), "--task", str(task),
         "--workload", str(trace), "--results_dir", str(results), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OPENAI_API_KEY": SECRET})
    assert done.returncode == 0, done.stderr
    output = results / "output.txt"
    return json.loads(done.stdout), output.read_text() if output.exists() else ""


@needs_jail
def test_every_attack_fails_inside_the_candidate_and_the_score_holds(tmp_path):
    trace = tmp_path / "trace.npy"
    np.save(trace, generate(SyntheticSpec(steps=300, layers=3, experts=16, seed=4)))
    results = tmp_path / "old-results"
    results.mkdir()
    (results / "previous.json").write_text("{}")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    attacker = tmp_path / "attacker.py"
    constants = (f"PROJECT = {str(ROOT)!r}\nTRACE = {str(trace)!r}\n"
                 f"RESULTS = {str(results)!r}\nPORT = {port}\n")
    attacker.write_text(INITIAL.read_text() + constants + ATTACKS)
    try:
        honest, _ = _evaluate(INITIAL, tmp_path, trace, "honest")
        attacked, output = _evaluate(attacker, tmp_path, trace, "attacked")
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody called
    finally:
        listener.close()
        for leftover in (ROOT / "tampered-by-candidate.txt",
                         Path("/tmp/tampered-by-candidate.txt")):
            tampered = leftover.exists()
            leftover.unlink(missing_ok=True)
            assert not tampered, f"the candidate wrote {leftover}"
    for name in ATTACK_NAMES:
        assert f"ATTACK {name}: denied PermissionError" in output, output
    assert SECRET not in output
    assert attacked["isolation"] == "full"
    for key in ("balancedness_gpu", "balancedness_slot", "migration_slots"):
        assert attacked[key] == honest[key]


@needs_jail
def test_garbage_on_the_channel_is_a_clean_failure(tmp_path):
    program = tmp_path / "scribbler.py"
    program.write_text(INITIAL.read_text() + '''
import os

for fd in range(3, 64):  # the channel's descriptors are among these
    try:
        os.write(fd, b"\\xff" * 64 + b'{"ready": true}')
    except OSError:
        pass
''')
    task = write_task(tmp_path, SMALL_TASK)
    done = subprocess.run([sys.executable, "evaluate.py", "--program_path", str(program),
                           "--task", str(task)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert "candidate failed" in done.stderr
    assert "malformed message" in done.stderr or "broke the protocol" in done.stderr
    again = subprocess.run([sys.executable, "evaluate.py", "--program_path", str(INITIAL),
                            "--task", str(task)], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr


def test_required_isolation_refuses_to_start_where_the_kernel_cannot(monkeypatch, capsys):
    import evaluate

    weak = dict(jail.probe(), level="partial", seccomp=False, missing=["seccomp"])
    monkeypatch.setattr(jail, "probe", lambda: weak)
    code = evaluate.main(["--program_path", str(INITIAL), "--set",
                          "limits.isolation=required"])
    assert code == 2
    error = capsys.readouterr().err
    assert "limits.isolation is 'required'" in error and "no seccomp isolation" in error


def test_best_effort_warns_once_and_records_the_level(monkeypatch, capsys, tmp_path):
    import evaluate

    weak = dict(jail.probe(), level="partial", seccomp=False, missing=["seccomp"])
    monkeypatch.setattr(jail, "probe", lambda: weak)
    task = write_task(tmp_path, SMALL_TASK)
    code = evaluate.main(["--program_path", str(INITIAL), "--task", str(task),
                          "--results_dir", str(tmp_path / "out")])
    assert code == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "isolation" in line]
    assert len(warnings) == 1 and "partial" in warnings[0]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["isolation"] == REAL_LEVEL  # what the child reached, not the probe


def test_templates_hold_no_secrets_and_no_harness(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    sandbox.shutdown_templates()
    sandbox.prestart()
    server = sandbox._IDLE[-1]
    server.wait_ready()
    environ = Path(f"/proc/{server.process.pid}/environ").read_bytes()
    assert SECRET.encode() not in environ and b"OPENAI_API_KEY" not in environ
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "torch" in maps  # pre-warmed
    assert not any(str(ROOT / "eplb") in path for path in server.read_paths)
    sandbox.shutdown_templates()


def test_run_refuses_before_writing_anything_when_isolation_is_required(monkeypatch, capsys,
                                                                         tmp_path):
    import run_evo

    weak = dict(jail.probe(), level="none", filesystem=False, seccomp=False, network=False,
                signals=False, missing=["filesystem", "network", "signals", "seccomp"])
    monkeypatch.setattr(jail, "probe", lambda: weak)
    code = run_evo.main([f"results_root={tmp_path / 'results'}",
                         "task.limits.isolation=required"])
    assert code == 2
    assert "limits.isolation is 'required'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
