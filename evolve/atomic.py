"""Atomic file writes: a crash never leaves a torn file, only the old one or the new one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: Path, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call write(handle) on a temp file next to `path`, then move it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data) -> None:
    """Write `data` as indented JSON (or JSON text already formatted) atomically."""
    text = data if isinstance(data, str) else json.dumps(data, indent=2)
    atomic_write(Path(path), lambda f: f.write(text))
