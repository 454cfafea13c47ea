"""The wire format between the engine and a sandboxed child.

One message = a JSON header plus named numpy arrays in .npy form, framed by two
lengths. Arrays are loaded with pickling disabled, so nothing a child sends can
run code in the parent. This module imports only the standard library and
numpy: the child loads it by file path, without the project on its sys.path.
"""

from __future__ import annotations

import io
import json
import os
import select
import struct
import time

import numpy as np

MAX_MESSAGE_BYTES = 1 << 30


class ChannelError(RuntimeError):
    """A message was malformed."""


def send(fd: int, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write one message (JSON header + named arrays) to a file descriptor."""
    arrays = arrays or {}
    blobs = []
    for name, array in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        blobs.append((name, buffer.getvalue()))
    meta = dict(header, _arrays=[[name, len(blob)] for name, blob in blobs])
    payload = json.dumps(meta).encode() + b"".join(blob for _, blob in blobs)
    head_len = len(payload) - sum(len(blob) for _, blob in blobs)
    _write_all(fd, struct.pack("<QQ", len(payload), head_len) + payload)


def receive(fd: int, deadline: float | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Read one message; raises ChannelError on timeout, EOF or a malformed message."""
    total, head_len = struct.unpack("<QQ", _read_exact(fd, 16, deadline))
    if total > MAX_MESSAGE_BYTES or head_len > total:
        raise ChannelError(f"malformed message from child ({total} bytes announced)")
    payload = _read_exact(fd, total, deadline)
    try:
        header = json.loads(payload[:head_len])
        arrays, offset = {}, head_len
        for name, size in header.pop("_arrays"):
            blob = payload[offset:offset + size]
            arrays[name] = np.load(io.BytesIO(blob), allow_pickle=False)
            offset += size
    except (ValueError, KeyError, TypeError) as exc:
        raise ChannelError(f"malformed message from child: {exc}") from exc
    return header, arrays


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError as exc:
            raise EOFError("peer closed the channel") from exc
        view = view[written:]


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks, remaining = [], size
    while remaining:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
