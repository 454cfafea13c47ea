"""The wire format between the engine and a sandboxed child.

One message = a JSON header (with each array's dtype and shape) followed by the
arrays' raw bytes, framed by two lengths. Only numeric dtypes are accepted and
arrays are views of the received buffer: no pickle, so nothing a child sends can
run code in the parent. This module imports only the standard library and
numpy: the child loads it by file path, without the project on its sys.path.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

import numpy as np

MAX_MESSAGE_BYTES = 1 << 30


class ChannelError(RuntimeError):
    """A message was malformed."""


NUMERIC_KINDS = "biufc"
ALIGNMENT = 64


def send(fd: int, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write one message (JSON header + named numeric arrays) to a file descriptor."""
    arrays = {name: np.ascontiguousarray(a) for name, a in (arrays or {}).items()}
    for name, array in arrays.items():
        if array.dtype.kind not in NUMERIC_KINDS or array.dtype.hasobject:
            raise TypeError(f"array {name!r} has non-numeric dtype {array.dtype}")
    meta = dict(header, _arrays=[[n, a.dtype.str, list(a.shape)] for n, a in arrays.items()])
    head = json.dumps(meta).encode()
    head += b" " * (_aligned(len(head)) - len(head))  # arrays start aligned: fast views
    total = len(head) + sum(_aligned(a.nbytes) for a in arrays.values())
    _write_all(fd, struct.pack("<QQ", total, len(head)) + head)
    for array in arrays.values():
        if array.nbytes:
            _write_all(fd, memoryview(array.reshape(-1)).cast("B"))
        _write_all(fd, b"\0" * (_aligned(array.nbytes) - array.nbytes))


def _aligned(size: int) -> int:
    return -(-size // ALIGNMENT) * ALIGNMENT


def receive(fd: int, deadline: float | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Read one message; TimeoutError past the deadline, EOFError if the peer is gone,
    ChannelError if the message is malformed (announced sizes, dtypes or shapes)."""
    total, head_len = struct.unpack("<QQ", _read_exact(fd, 16, deadline))
    if total > MAX_MESSAGE_BYTES or head_len > total:
        raise ChannelError(f"malformed message ({total} bytes announced)")
    payload = _read_exact(fd, total, deadline)
    try:
        header = json.loads(bytes(payload[:head_len]))
        arrays, offset = {}, head_len
        for name, dtype_text, shape in header.pop("_arrays"):
            dtype = np.dtype(dtype_text)
            if dtype.kind not in NUMERIC_KINDS or dtype.hasobject:
                raise ValueError(f"array {name!r} has non-numeric dtype {dtype}")
            count = int(np.prod(shape, dtype=np.int64))
            arrays[name] = np.frombuffer(payload, dtype, count, offset).reshape(shape)
            offset += _aligned(count * dtype.itemsize)
        if offset != total:
            raise ValueError("sizes do not add up")
    except (ValueError, KeyError, TypeError) as exc:
        raise ChannelError(f"malformed message: {exc}") from exc
    return header, arrays


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError as exc:
            raise EOFError("peer closed the channel") from exc
        view = view[written:]


def _read_exact(fd: int, size: int, deadline: float | None) -> bytearray:
    buffer = bytearray(size)
    view, filled = memoryview(buffer), 0
    while filled < size:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        got = os.readv(fd, [view[filled:]])
        if not got:
            raise EOFError
        filled += got
    return buffer


def enlarge_pipe(fd: int, size: int = 1 << 20) -> None:
    """Ask Linux for a bigger pipe buffer (fewer wake-ups for ~1 MB messages); best effort."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except OSError:
        pass
