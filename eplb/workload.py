"""Expert-load traces: read, check, cache, and cut into rebalancing windows.

A trace is an integer array shaped (steps, layers, experts): tokens routed to
each logical expert at each step. Sources:
  * `expert-load.json` ({"load_history": [{"logical_expert_load": [[int]*E]*L}, ...]}),
    streamed step by step (the public DeepSeek-V3 trace is ~224 MB) and cached as
    a binary .npy beside it, keyed by a hash of the file's content;
  * `.npy` / `.pt` arrays shaped (steps, layers, experts);
  * "synthetic": the calibrated generator in `eplb.synthetic`.
Anything missing, empty, truncated or mis-shaped raises `WorkloadError`; there
is never a silent fallback.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import ijson
import numpy as np

CACHE_VERSION = "v1"
INT32_MAX = 2**31 - 1


class WorkloadError(ValueError):
    """The trace cannot be used; the message says which file and why."""


def load_trace(path: str | os.PathLike) -> np.ndarray:
    """Load a trace file as an integer array (steps, layers, experts), checked."""
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"trace not found: {path}")
    if path.stat().st_size == 0:
        raise WorkloadError(f"trace is empty: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _load_json_cached(path)
    if suffix == ".npy":
        try:
            steps = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise WorkloadError(f"trace {path} is not a readable .npy array: {exc}") from None
    elif suffix == ".pt":
        steps = _load_torch(path)
    else:
        raise WorkloadError(f"trace {path}: unsupported format {suffix!r} (use .json, .npy, .pt)")
    return check_trace(steps, str(path))


def check_trace(steps: np.ndarray, source: str) -> np.ndarray:
    """Check shape and values of a (steps, layers, experts) trace.

    Integer arrays are returned as they are (a memory-mapped cache stays mapped);
    whole-number float arrays are converted to int64.
    """
    steps = np.asarray(steps)
    if steps.ndim != 3:
        raise WorkloadError(
            f"trace {source} must be shaped (steps, layers, experts); got shape {steps.shape}")
    if 0 in steps.shape:
        raise WorkloadError(f"trace {source} is empty: shape {steps.shape}")
    if steps.dtype.kind not in "iuf":
        raise WorkloadError(f"trace {source} must hold numbers; got dtype {steps.dtype}")
    if steps.dtype.kind == "f":
        if not np.isfinite(steps).all():
            raise WorkloadError(f"trace {source} contains NaN or infinite loads")
        if (steps != np.round(steps)).any():
            raise WorkloadError(f"trace {source} contains fractional token counts")
    if (steps < 0).any():
        index = tuple(int(i) for i in np.argwhere(steps < 0)[0])
        raise WorkloadError(f"trace {source} has a negative load at (step, layer, expert) {index}")
    if steps.dtype.kind == "f":
        steps = steps.astype(np.int64)
    return steps


def make_windows(steps: np.ndarray, interval: int, max_windows: int | None = None) -> np.ndarray:
    """Sum consecutive blocks of `interval` steps; a trailing partial block is dropped.

    Returns int64 (windows, layers, experts). Fewer than two windows is an error:
    the protocol needs one window to place and the next to score.
    """
    if interval < 1:
        raise WorkloadError(f"rebalance_interval must be >= 1; got {interval}")
    count = steps.shape[0] // interval
    if max_windows is not None:
        count = min(count, max_windows)
    if count < 2:
        raise WorkloadError(
            f"trace has {steps.shape[0]} steps: fewer than two windows of {interval} steps")
    head = steps[: count * interval]
    return head.reshape(count, interval, *steps.shape[1:]).sum(axis=1, dtype=np.int64)


def _load_torch(path: Path) -> np.ndarray:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise WorkloadError(f"trace {path} is not a readable .pt tensor: {exc}") from None
    if not isinstance(data, torch.Tensor):
        raise WorkloadError(f"trace {path} must hold one tensor; got {type(data).__name__}")
    return data.numpy()


def _content_key(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_candidates(path: Path, key: str) -> list[Path]:
    name = f".{path.name}.{CACHE_VERSION}.{key}.npy"
    user_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "eplb-evolve"
    return [path.with_name(name), user_cache / name]


def _load_json_cached(path: Path) -> np.ndarray:
    """The trace of a JSON file via its content-keyed binary cache (built if absent).

    The cache was checked when it was written, so a hit is only memory-mapped.
    """
    candidates = _cache_candidates(path, _content_key(path))
    for cached in candidates:
        if cached.is_file():
            try:
                steps = np.load(cached, mmap_mode="r", allow_pickle=False)
                if steps.ndim == 3:
                    return steps
            except (ValueError, OSError):
                pass
            cached.unlink(missing_ok=True)  # a damaged cache is rebuilt
    for cached in candidates:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cached.parent, suffix=".tmp",
                                             delete=False) as out:
                pass
        except OSError:
            continue
        try:
            _parse_json_into(path, Path(out.name))
            os.replace(out.name, cached)
        finally:
            Path(out.name).unlink(missing_ok=True)
        return np.load(cached, mmap_mode="r", allow_pickle=False)
    with tempfile.TemporaryDirectory() as scratch:  # no writable cache: parse, then read back
        target = Path(scratch) / "trace.npy"
        _parse_json_into(path, target)
        return np.load(target)


HEADER_BYTES = 128  # fixed .npy header size, rewritten once the step count is known


def _npy_header(shape: tuple[int, ...]) -> bytes:
    text = f"{{'descr': '<i4', 'fortran_order': False, 'shape': {shape}, }}"
    magic = b"\x93NUMPY\x01\x00"
    body = text.ljust(HEADER_BYTES - len(magic) - 2 - 1) + "\n"
    return magic + len(body).to_bytes(2, "little") + body.encode("latin1")


def _parse_json_into(path: Path, target: Path) -> None:
    """Stream `load_history[*].logical_expert_load` into an int32 .npy file, step by step.

    Only one step is held in memory at a time; every step is checked on the way.
    """
    shape, count = None, 0
    with open(path, "rb") as handle, open(target, "wb") as out:
        out.write(b"\0" * HEADER_BYTES)
        try:
            items = ijson.items(handle, "load_history.item.logical_expert_load", use_float=True)
            for index, step in enumerate(items):
                array = _check_step(path, index, step, shape)
                shape = array.shape
                out.write(array.astype("<i4").tobytes())
                count += 1
        except ijson.JSONError as exc:
            raise WorkloadError(f"trace {path} is truncated or not valid JSON: {exc}") from None
        if not count:
            raise WorkloadError(
                f"trace {path} has no load_history[*].logical_expert_load entries")
        out.seek(0)
        out.write(_npy_header((count, *shape)))


def _check_step(path: Path, index: int, step, shape) -> np.ndarray:
    try:
        array = np.asarray(step)
        if array.dtype.kind not in "iuf":
            raise TypeError
        array = array.astype(np.float64)
    except (ValueError, TypeError):
        raise WorkloadError(f"trace {path}: step {index} is not a rectangular layers x experts "
                            "array of numbers") from None
    if array.ndim != 2 or 0 in array.shape:
        raise WorkloadError(f"trace {path}: step {index} must be a non-empty layers x experts "
                            f"array; got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise WorkloadError(f"trace {path}: step {index} has shape {array.shape}, earlier "
                            f"steps {shape}")
    if not np.isfinite(array).all() or (array != np.round(array)).any() or \
            (array < 0).any() or array.max() > INT32_MAX:
        raise WorkloadError(f"trace {path}: step {index} holds loads that are not whole "
                            "numbers in [0, 2**31)")
    return array
