"""Loading an `expert-load.json` trace shaped like the public DeepSeek-V3 one.

Builds, in a temporary directory, a 58 layers x 256 experts trace
({"load_history": [{"logical_expert_load": [[int] * 256] * 58}, ...]}), written
step by step so this process never holds the whole trace, then measures
`eplb.workload.load_trace` in a fresh subprocess per measurement (so neither the
in-process state nor the peak RSS carries over from one measurement to the next):

  * first load (JSON parsed, .npy cache written): wall time, split into content
    hashing / parsing / the rest (cache write, checks), and the peak RSS increase
    (ru_maxrss after the load minus ru_maxrss before it, in that subprocess), also
    as a multiple of the final int array's size;
  * second and later loads (cache hit): wall time (median of several
    subprocesses) against the target "well under a second" (< 1 s), and the
    peak RSS increase.

XDG_CACHE_HOME points into the temporary directory, so the user's cache is never
read or written. Run from the project root:  python benchmarks/bench_trace_load.py
[STEPS]  (default 3000 steps, about 200 MB).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LAYERS, EXPERTS = 58, 256
DEFAULT_STEPS = 3000
CACHE_HIT_RUNS = 5
TARGET_HIT_S = 1.0

CHILD = r"""
import json, mmap, resource, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from eplb import workload

phases = {}
def timed(name, func):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - start
    return wrapper
workload._content_key = timed("hash", workload._content_key)
workload._parse_json_into = timed("parse", workload._parse_json_into)
workload.check_trace = timed("check", workload.check_trace)

def mapped(array):
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
steps = workload.load_trace(sys.argv[2])
total = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": total, "peak_increase_kib": after - before,
                  "baseline_kib": before, "shape": list(steps.shape),
                  "dtype": str(steps.dtype), "nbytes": int(steps.nbytes),
                  "mmap": mapped(steps), "phases": phases,
                  "checksum": int(np.asarray(steps[::97, 3, ::5], dtype=np.int64).sum())}))
"""


def write_trace(path: Path, steps: int, seed: int = 0) -> None:
    """Stream a realistic-looking trace to `path`, one step at a time."""
    rng = np.random.default_rng(seed)
    popularity = np.exp(rng.normal(0.0, 0.8, (LAYERS, EXPERTS)))
    popularity /= popularity.sum(axis=1, keepdims=True)
    routed = 4096 * 8
    with open(path, "w", encoding="ascii") as out:
        out.write('{"load_history": [')
        for step in range(steps):
            expected = routed * popularity
            load = np.maximum(np.rint(expected + rng.standard_normal(expected.shape)
                                      * np.sqrt(expected)), 0).astype(np.int64)
            rows = "], [".join(", ".join(map(str, row)) for row in load.tolist())
            out.write(('' if step == 0 else ', ') + '{"logical_expert_load": [[' + rows + "]]}")
        out.write("]}")


def measure(trace: Path, env: dict[str, str]) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(trace)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measurement subprocess failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - start
    return result


def main() -> int:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_STEPS
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as tmp:
        trace = Path(tmp) / "expert-load.json"
        start = time.perf_counter()
        write_trace(trace, steps)
        size_mb = trace.stat().st_size / 1e6
        print(f"built {trace.name}: {steps} steps x {LAYERS} x {EXPERTS}, {size_mb:.1f} MB "
              f"in {time.perf_counter() - start:.1f} s")
        env = dict(os.environ, XDG_CACHE_HOME=str(Path(tmp) / "xdg-cache"))

        first = measure(trace, env)
        cached = sorted(p.name for p in Path(tmp).glob(".expert-load.json.*.npy"))
        assert cached, "no .npy cache was written beside the trace"
        hits = [measure(trace, env) for _ in range(CACHE_HIT_RUNS)]
        for hit in hits:
            assert hit["shape"] == first["shape"] and hit["checksum"] == first["checksum"]
            assert hit["mmap"], "cache hit did not return a memory-mapped array"

    nbytes = first["nbytes"]
    first_peak = first["peak_increase_kib"] * 1024
    phases = first["phases"]
    rest = first["seconds"] - phases.get("hash", 0) - phases.get("parse", 0)
    print(f"final array: shape {tuple(first['shape'])}, {first['dtype']}, "
          f"{nbytes / 1e6:.1f} MB; cache file {cached[0]}")
    print(f"first load: {first['seconds']:.2f} s (hash {phases.get('hash', 0):.2f} s, "
          f"parse {phases.get('parse', 0):.2f} s, cache write + checks {rest:.2f} s); "
          f"subprocess total {first['process_seconds']:.2f} s; "
          f"baseline RSS {first['baseline_kib'] / 1024:.0f} MiB")
    hit_s = statistics.median(h["seconds"] for h in hits)
    hit_hash = statistics.median(h["phases"].get("hash", 0) for h in hits)
    hit_check = statistics.median(h["phases"].get("check", 0) for h in hits)
    hit_peak = statistics.median(h["peak_increase_kib"] for h in hits) * 1024
    print(f"cache hits ({CACHE_HIT_RUNS} subprocesses): "
          + ", ".join(f"{h['seconds']:.3f}" for h in hits)
          + f" s; median hash {hit_hash:.3f} s, check_trace {hit_check:.3f} s")
    verdict = "PASS" if hit_s < TARGET_HIT_S else "FAIL"
    print(f"SUMMARY trace {size_mb:.0f} MB ({steps} steps): first load {first['seconds']:.2f} s, "
          f"peak RSS +{first_peak / 2**20:.0f} MiB = {first_peak / nbytes:.2f}x the final "
          f"{first['dtype']} array ({nbytes / 2**20:.0f} MiB)")
    print(f"SUMMARY cache-hit load: {hit_s:.3f} s median (target < {TARGET_HIT_S:.0f} s) "
          f"{verdict}; first/cached ratio {first['seconds'] / hit_s:.0f}x; peak RSS "
          f"+{hit_peak / 2**20:.0f} MiB = {hit_peak / nbytes:.2f}x the array")
    return 0


if __name__ == "__main__":
    sys.exit(main())
