"""The sandbox template's own bookkeeping: the engine's scripts are loaded once but never
stale, a script that cannot load is reported from the child, and a kill reaches every
process a child left behind, however it hid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evolve.sandbox import FORKSERVER, Limits, Sandbox, SandboxError

SCRIPT = '''
VERSION = {version!r}


def serve(channel, inbox, outbox, args):
    channel.send(outbox, {{"version": VERSION}})
    channel.receive(inbox)
'''


def test_a_script_changed_between_sandboxes_is_loaded_again(tmp_path):
    script = tmp_path / "script.py"
    for version in ("first", "second", "the third, longer"):
        script.write_text(SCRIPT.format(version=version))
        for _ in range(2):  # the second start uses what the template kept
            with Sandbox(script, [], Limits()) as box:
                header, _ = box.receive()
            assert header["version"] == version


def test_a_script_that_cannot_load_is_reported_by_the_child(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("def serve(:\n")
    for _ in range(2):  # the template failed to load it too, and keeps nothing
        with pytest.raises(SandboxError, match=r"(?s)exited with code 1.*SyntaxError"):
            Sandbox(script, [], Limits())


# A subreaper (as the template is) forks a child, which forks a grandchild that leaves
# the child's session and forks a child of its own; all three wait forever. The
# template's kill must reach them all: each is then reaped here, or this never ends.
KILL_TREE = '''
import ctypes, importlib.util, os, signal, sys

spec = importlib.util.spec_from_file_location("forkserver", sys.argv[1])
forkserver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(forkserver)
forkserver._CHILD_LISTS = sys.argv[2] == "lists"
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
ready, up = os.pipe()
child = os.fork()
if child == 0:
    os.setsid()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(up, b"up")
        while True:
            signal.pause()
    while True:
        signal.pause()
assert os.read(ready, 2) == b"up"
forkserver._kill_descendants(child)
reaped = []
while True:
    try:
        reaped.append(os.waitstatus_to_exitcode(os.wait()[1]))
    except ChildProcessError:
        break
print(reaped)
'''


@pytest.mark.parametrize("listing", ["lists", "parents"])
def test_kill_reaches_every_process_below_the_template(listing):
    done = subprocess.run([sys.executable, "-c", KILL_TREE, str(FORKSERVER), listing],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(FORKSERVER).parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[-9, -9, -9]"
