"""SGLang's expert-distribution recorder output as a workload.

The recorder dumps `logical_count`: tokens routed to each logical expert, shaped
[layers, experts] (one aggregate over the recording) or [passes, layers, experts] (one
row per forward pass), as JSON (`{"logical_count": [...]}`) or a torch `.pt` dict.
A workload is one such file, a folder (its .json and .pt files, by name) or a
comma-separated list of files, in that order.

Windows, not steps: an aggregate is already a total over a stretch of serving, so an
aggregate file is one window whatever `rebalance_interval`; a per-pass file is cut into
windows of `rebalance_interval` passes (a trailing partial window is dropped). The
files' windows follow each other in order; `max_windows` caps the total.

Dense layers: SGLang counts every layer of the model, and the dense ones (DeepSeek-V3's
first 3) route nothing. Leading layers that are zero in every file are dropped, with a
note on stderr and in the workload's name. Anything else odd (a missing key, a wrong
shape, files of different sizes, negative or fractional counts) is a WorkloadError.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import ijson
import numpy as np

from eplb.workload import WorkloadError, check_trace

KEY = "logical_count"
SUFFIXES = (".json", ".pt")


def sources(spec: str, resolve: Callable[[str], Path]) -> list[Path] | None:
    """The SGLang files a workload spec names, or None when it names another trace kind.

    A folder or a comma-separated list always means SGLang files; a single file does
    when it holds `logical_count`.
    """
    paths = [resolve(part.strip()) for part in spec.split(",") if part.strip()]
    if len(paths) > 1:
        return paths
    if len(paths) == 1 and paths[0].is_dir():
        files = sorted(p for p in paths[0].iterdir()
                       if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise WorkloadError(f"trace folder {paths[0]} holds no .json or .pt files")
        return files
    return paths if len(paths) == 1 and is_sglang_file(paths[0]) else None


def is_sglang_file(path: Path) -> bool:
    """Whether a .json or .pt file holds a top-level `logical_count` (read lazily)."""
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            with open(path, "rb") as handle:
                for prefix, event, value in ijson.parse(handle):
                    if prefix == "" and event == "map_key" and value in (KEY, "load_history"):
                        return value == KEY
                    if prefix == "" and event == "end_map":
                        return False
        except (ijson.JSONError, UnicodeDecodeError, OSError):
            return False
        return False
    if suffix == ".pt":
        try:
            data = _torch_load(path, mmap=True)
        except WorkloadError:
            return False
        return isinstance(data, dict) and KEY in data
    return False


def _torch_load(path: Path, mmap: bool = False):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises many types for corrupt files
        if mmap:  # files in torch's legacy format cannot be memory-mapped
            return _torch_load(path)
        raise WorkloadError(f"trace {path} is not a readable .pt file: {exc}") from None


def read_counts(path: Path) -> np.ndarray:
    """One file's `logical_count`, checked: int64 [layers, experts] or [passes, ...]."""
    if not path.is_file():
        raise WorkloadError(f"trace not found: {path}")
    if path.suffix.lower() == ".pt":
        data = _torch_load(path)
    else:
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WorkloadError(f"SGLang trace {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or KEY not in data:
        raise WorkloadError(f"SGLang trace {path} has no '{KEY}' key (expected the expert "
                            "distribution recorder's output)")
    counts = data[KEY]
    try:
        counts = np.asarray(counts.numpy() if hasattr(counts, "numpy") else counts)
    except ValueError:
        raise WorkloadError(f"SGLang trace {path}: '{KEY}' is not a rectangular array") \
            from None
    if counts.ndim not in (2, 3):
        raise WorkloadError(f"SGLang trace {path}: '{KEY}' must be [layers, experts] or "
                            f"[passes, layers, experts]; got shape {counts.shape}")
    checked = check_trace(counts if counts.ndim == 3 else counts[None], f"{path} ({KEY})")
    return np.asarray(checked, dtype=np.int64).reshape(counts.shape)


def load_windows(paths: list[Path], interval: int,
                 max_windows: int | None = None) -> tuple[str, np.ndarray]:
    """(name, windows [N, layers, experts]) of SGLang files, in order; see the module doc."""
    if interval < 1:
        raise WorkloadError(f"rebalance_interval must be >= 1; got {interval}")
    counts = [read_counts(path) for path in paths]
    shape = counts[0].shape[-2:]
    for path, array in zip(paths, counts, strict=True):
        if array.shape[-2:] != shape:
            raise WorkloadError(f"SGLang trace {path} has {array.shape[-2]} layers x "
                                f"{array.shape[-1]} experts, but {paths[0].name} has "
                                f"{shape[0]} x {shape[1]}")
    used = np.zeros(shape[0], dtype=bool)
    for array in counts:
        used |= array.reshape(-1, *shape).any(axis=(0, 2))
    if not used.any():
        raise WorkloadError(f"SGLang trace {paths[0]}: every layer of every file is zero")
    dense = int(np.argmax(used))
    windows = []
    for path, array in zip(paths, counts, strict=True):
        array = array[..., dense:, :]
        if array.ndim == 2:
            windows.append(array[None])
            continue
        count = len(array) // interval
        if not count:
            raise WorkloadError(f"SGLang trace {path}: {len(array)} passes, fewer than one "
                                f"window of rebalance_interval {interval}")
        windows.append(array[:count * interval].reshape(count, interval, *array.shape[1:])
                       .sum(axis=1))
    windows = np.concatenate(windows)[:max_windows]
    if len(windows) < 2:
        raise WorkloadError(f"SGLang trace {', '.join(map(str, paths))}: {len(windows)} "
                            "window; the protocol needs two (one to place, one to score)")
    where = paths[0].parent.name if len(paths) > 1 else paths[0].name
    name = f"sglang:{where} ({len(paths)} files, {len(windows)} windows"
    if dense:
        note = (f"dropped {dense} leading all-zero layers (dense layers), "
                f"{shape[0] - dense} MoE layers kept")
        print(f"note: SGLang trace {where}: {note}", file=sys.stderr)
        name += f"; {note}"
    return name + ")", windows
