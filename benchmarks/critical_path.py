"""Whether the evaluator's work right now is hidden behind the candidate's: for benchmarks.

The evaluator checks and scores a window's answer while the candidate works on the next
request. Work done then adds nothing to an evaluation's wall time, unless the reply is
already waiting when it ends (then the evaluator was the one holding things up). While
`tracking()` is active, `hidden()` tells which: a request is in flight (sent, its reply
not yet read) and its reply has not arrived.
"""

from __future__ import annotations

from contextlib import contextmanager

from evolve import sandbox

_STATE = {"box": None, "awaiting": False}


@contextmanager
def tracking():
    """Note every Sandbox send and receive for the duration (restored afterwards)."""
    send, receive = sandbox.Sandbox.send, sandbox.Sandbox.receive

    def noted_send(self, *args, **kwargs):
        _STATE["box"], _STATE["awaiting"] = self, True
        return send(self, *args, **kwargs)

    def noted_receive(self, *args, **kwargs):
        try:
            return receive(self, *args, **kwargs)
        finally:
            _STATE["awaiting"] = False

    sandbox.Sandbox.send, sandbox.Sandbox.receive = noted_send, noted_receive
    try:
        yield
    finally:
        sandbox.Sandbox.send, sandbox.Sandbox.receive = send, receive
        _STATE.update(box=None, awaiting=False)


def hidden() -> bool:
    """Whether work ending now ran behind a candidate's call (see the module docstring)."""
    return _STATE["awaiting"] and not _STATE["box"].reply_waiting()
