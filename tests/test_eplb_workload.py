"""Traces (.json with its cache, .npy, .pt), their errors, windows, and the synthetic generator."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eplb import synthetic, workload
from eplb.workload import WorkloadError, check_trace, load_trace, make_windows

REAL_TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / \
    "sglang-ep-statistics"

STEPS = np.arange(5 * 2 * 3).reshape(5, 2, 3) * 7 % 23  # (steps, layers, experts)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Keep the fallback user cache out of the real home directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def write_json(path: Path, steps) -> Path:
    history = [{"logical_expert_load": s.tolist() if isinstance(s, np.ndarray) else s}
               for s in steps]
    path.write_text(json.dumps({"load_history": history, "other": {"x": 1}}))
    return path


def cache_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.npy"))


# ---------------------------------------------------------------- JSON and its cache

def test_json_round_trip(tmp_path):
    path = write_json(tmp_path / "expert-load.json", STEPS)
    loaded = load_trace(path)
    assert loaded.shape == (5, 2, 3)
    assert loaded.dtype.kind in "iu"
    assert np.array_equal(loaded, STEPS)


def test_json_cache_created_and_used(tmp_path, monkeypatch):
    path = write_json(tmp_path / "expert-load.json", STEPS)
    assert cache_files(path) == []
    first = np.array(load_trace(path))
    cached = cache_files(path)
    assert len(cached) == 1
    assert workload.CACHE_VERSION in cached[0].name
    assert np.array_equal(np.load(cached[0]), STEPS)

    def no_parsing(*_args):
        raise AssertionError("the JSON was parsed again instead of using the cache")

    monkeypatch.setattr(workload, "_parse_json_into", no_parsing)
    second = load_trace(path)
    assert np.array_equal(second, first)
    assert not (tmp_path / "xdg-cache").exists() or not any((tmp_path / "xdg-cache").rglob("*"))


def test_json_cache_invalidated_when_content_changes(tmp_path, monkeypatch):
    path = write_json(tmp_path / "expert-load.json", STEPS)
    load_trace(path)
    calls = []
    original = workload._parse_json_into

    def counting(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(workload, "_parse_json_into", counting)
    changed = STEPS.copy()
    changed[2, 1, 0] += 1000
    write_json(path, changed)
    assert np.array_equal(load_trace(path), changed)
    assert len(calls) == 1
    assert np.array_equal(load_trace(path), changed)
    assert len(calls) == 1  # the new content's cache is used now


def test_damaged_cache_is_rebuilt(tmp_path):
    path = write_json(tmp_path / "expert-load.json", STEPS)
    load_trace(path)
    (cached,) = cache_files(path)
    cached.write_bytes(b"not an npy file")
    assert np.array_equal(load_trace(path), STEPS)
    assert np.array_equal(np.load(cached), STEPS)


def test_cache_falls_back_to_user_cache_when_directory_is_read_only(tmp_path, monkeypatch):
    path = write_json(tmp_path / "expert-load.json", STEPS)
    real_tempfile = workload.tempfile.NamedTemporaryFile

    def refuse_beside_trace(*args, dir=None, **kwargs):
        if Path(dir) == tmp_path:
            raise PermissionError("read-only directory")
        return real_tempfile(*args, dir=dir, **kwargs)

    monkeypatch.setattr(workload.tempfile, "NamedTemporaryFile", refuse_beside_trace)
    assert np.array_equal(load_trace(path), STEPS)
    assert cache_files(path) == []
    user = list((tmp_path / "xdg-cache" / "eplb-evolve").glob(".expert-load.json.*.npy"))
    assert len(user) == 1 and np.array_equal(np.load(user[0]), STEPS)


def test_no_writable_cache_still_loads(tmp_path, monkeypatch):
    path = write_json(tmp_path / "expert-load.json", STEPS)

    def refuse(*args, **kwargs):
        raise PermissionError("nowhere to write")

    monkeypatch.setattr(workload.tempfile, "NamedTemporaryFile", refuse)
    assert np.array_equal(load_trace(path), STEPS)
    assert cache_files(path) == []
    assert not list((tmp_path / "xdg-cache").rglob("*.npy"))


def test_cache_of_the_wrong_shape_is_rebuilt(tmp_path):
    path = write_json(tmp_path / "expert-load.json", STEPS)
    load_trace(path)
    (cached,) = cache_files(path)
    np.save(cached, np.zeros((2, 3), dtype=np.int32))
    assert np.array_equal(load_trace(path), STEPS)
    assert np.load(cached).shape == (5, 2, 3)


def test_failed_parse_leaves_no_files(tmp_path):
    steps = STEPS.tolist()
    steps[4][0][0] = -1
    path = write_json(tmp_path / "bad.json", steps)
    with pytest.raises(WorkloadError, match="step 4"):
        load_trace(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_float_whole_numbers_in_json_are_accepted(tmp_path):
    path = tmp_path / "floats.json"
    history = [{"logical_expert_load": (np.asarray(s) * 1.0).tolist()} for s in STEPS]
    path.write_text(json.dumps({"load_history": history}))
    assert np.array_equal(load_trace(path), STEPS)


# ---------------------------------------------------------------- .npy and .pt

def test_npy_round_trip(tmp_path):
    path = tmp_path / "trace.npy"
    np.save(path, STEPS.astype(np.int32))
    loaded = load_trace(path)
    assert loaded.dtype.kind in "iu" and np.array_equal(loaded, STEPS)


def test_pt_round_trip(tmp_path):
    path = tmp_path / "trace.pt"
    torch.save(torch.from_numpy(STEPS.astype(np.int64)), path)
    loaded = load_trace(path)
    assert loaded.dtype.kind in "iu" and np.array_equal(loaded, STEPS)


def test_whole_number_float_arrays_become_int64(tmp_path):
    path = tmp_path / "trace.npy"
    np.save(path, STEPS.astype(np.float64))
    loaded = load_trace(path)
    assert np.array_equal(loaded, STEPS)
    assert loaded.dtype == np.int64


def test_pt_must_hold_a_tensor(tmp_path):
    path = tmp_path / "trace.pt"
    torch.save({"load": torch.zeros(3, 2, 2)}, path)
    with pytest.raises(WorkloadError, match="must hold one tensor"):
        load_trace(path)


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_corrupt_binary_files(tmp_path, suffix):
    path = tmp_path / f"trace{suffix}"
    path.write_bytes(b"\x93NUMPY garbage garbage garbage")
    with pytest.raises(WorkloadError, match=str(path.name)):
        load_trace(path)


# ---------------------------------------------------------------- errors

def test_missing_file(tmp_path):
    with pytest.raises(WorkloadError, match="not found"):
        load_trace(tmp_path / "nope.json")


@pytest.mark.parametrize("suffix", [".json", ".npy", ".pt"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(WorkloadError, match="empty"):
        load_trace(path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(WorkloadError, match="unsupported format"):
        load_trace(path)


def test_truncated_json(tmp_path):
    path = write_json(tmp_path / "t.json", STEPS)
    text = path.read_text()
    path.write_text(text[: len(text) * 2 // 3])
    with pytest.raises(WorkloadError, match="truncated or not valid JSON"):
        load_trace(path)
    assert cache_files(path) == []


def test_not_json_at_all(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("load_history: [1, 2]")
    with pytest.raises(WorkloadError, match="not valid JSON"):
        load_trace(path)


@pytest.mark.parametrize("document", [
    {"history": [{"logical_expert_load": [[1, 2]]}]},
    {"load_history": [{"expert_load": [[1, 2]]}]},
    {"load_history": []},
])
def test_wrong_keys(tmp_path, document):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(document))
    with pytest.raises(WorkloadError, match="no load_history"):
        load_trace(path)


def test_ragged_step(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"load_history": [
        {"logical_expert_load": [[1, 2, 3], [4, 5, 6]]},
        {"logical_expert_load": [[1, 2, 3], [4, 5]]},
    ]}))
    with pytest.raises(WorkloadError, match="step 1"):
        load_trace(path)


def test_step_with_other_shape(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"load_history": [
        {"logical_expert_load": [[1, 2, 3], [4, 5, 6]]},
        {"logical_expert_load": [[1, 2], [4, 5]]},
    ]}))
    with pytest.raises(WorkloadError, match=r"step 1 has shape \(2, 2\)"):
        load_trace(path)


@pytest.mark.parametrize("step", [[1, 2, 3], [[[1]]], [[]], 5])
def test_step_that_is_not_a_non_empty_matrix(tmp_path, step):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"load_history": [{"logical_expert_load": step}]}))
    with pytest.raises(WorkloadError, match="step 0 must be a .*layers x experts"):
        load_trace(path)


@pytest.mark.parametrize("bad", [-1, 2.5, 2**31, None, "abc", [1, 2]])
def test_bad_json_values(tmp_path, bad):
    steps = STEPS.tolist()
    steps[3][1][2] = bad
    path = write_json(tmp_path / "t.json", steps)
    with pytest.raises(WorkloadError, match="step 3"):
        load_trace(path)


def test_negative_load_in_array(tmp_path):
    steps = STEPS.astype(np.int64)
    steps[4, 0, 2] = -3
    path = tmp_path / "t.npy"
    np.save(path, steps)
    with pytest.raises(WorkloadError, match=r"negative load at .* \(4, 0, 2\)"):
        load_trace(path)


def test_fractional_load_in_array(tmp_path):
    steps = STEPS.astype(np.float32)
    steps[1, 1, 1] = 0.5
    path = tmp_path / "t.npy"
    np.save(path, steps)
    with pytest.raises(WorkloadError, match="fractional"):
        load_trace(path)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_load(value):
    steps = STEPS.astype(np.float64)
    steps[0, 0, 0] = value
    with pytest.raises(WorkloadError, match="NaN or infinite"):
        check_trace(steps, "mem")


@pytest.mark.parametrize("shape", [(5, 6), (5,), (2, 3, 4, 5)])
def test_wrong_number_of_dimensions(tmp_path, shape):
    path = tmp_path / "t.npy"
    np.save(path, np.ones(shape, dtype=np.int64))
    with pytest.raises(WorkloadError, match="must be shaped"):
        load_trace(path)


def test_zero_sized_and_non_numeric_arrays():
    with pytest.raises(WorkloadError, match="empty"):
        check_trace(np.zeros((0, 2, 3)), "mem")
    with pytest.raises(WorkloadError, match="numbers"):
        check_trace(np.array([[["a"]]]), "mem")


def test_fewer_than_two_windows(tmp_path):
    with pytest.raises(WorkloadError, match="fewer than two windows"):
        make_windows(STEPS, 3)
    with pytest.raises(WorkloadError, match="fewer than two windows"):
        make_windows(STEPS, 1, max_windows=1)
    with pytest.raises(WorkloadError, match="rebalance_interval"):
        make_windows(STEPS, 0)


# ---------------------------------------------------------------- windows

def test_make_windows_sums_and_drops_tail():
    steps = np.arange(7 * 2 * 3, dtype=np.int32).reshape(7, 2, 3)
    windows = make_windows(steps, 3)
    assert windows.dtype == np.int64 and windows.shape == (2, 2, 3)
    assert np.array_equal(windows[0], steps[0:3].sum(0))
    assert np.array_equal(windows[1], steps[3:6].sum(0))
    capped = make_windows(steps, 2, max_windows=2)
    assert capped.shape == (2, 2, 3)
    assert np.array_equal(capped[1], steps[2] + steps[3])


def test_make_windows_does_not_overflow_int32():
    steps = np.full((4, 1, 2), 2**31 - 1, dtype=np.int32)
    windows = make_windows(steps, 2)
    assert windows[0, 0, 0] == 2 * (2**31 - 1)


# ---------------------------------------------------------------- synthetic

SMALL = synthetic.SyntheticSpec(steps=50, layers=3, experts=16, seed=5)


def test_synthetic_deterministic_and_seeded():
    a, b = synthetic.generate(SMALL), synthetic.generate(SMALL)
    assert a.shape == (50, 3, 16) and a.dtype == np.int32
    assert np.array_equal(a, b)
    other = synthetic.generate(synthetic.SyntheticSpec(steps=50, layers=3, experts=16, seed=6))
    assert not np.array_equal(a, other)
    assert (a >= 0).all()
    check_trace(a, "synthetic")


def test_synthetic_token_totals():
    trace = synthetic.generate(SMALL)
    routed = SMALL.tokens_per_step * SMALL.top_k
    per_step = trace.sum(axis=2)  # (steps, layers)
    assert np.allclose(per_step, routed, rtol=0.02)


@pytest.fixture(scope="module")
def default_windows():
    """The task's default synthetic trace (58 layers x 256 experts, 20 windows)."""
    spec = synthetic.SyntheticSpec()
    return make_windows(synthetic.generate(spec), 100)


def synthetic_statistics(windows):
    stats = [synthetic.layer_statistics(w) for w in windows]
    return (float(np.median([s["max_over_mean"] for s in stats])),
            float(np.median([s["cv"] for s in stats])))


def test_synthetic_calibration(default_windows):
    assert default_windows.shape == (20, 58, 256)
    hottest, cv = synthetic_statistics(default_windows)
    assert 5.0 <= hottest <= 8.0
    assert 0.75 <= cv <= 0.95
    corr = synthetic.window_correlation(default_windows)
    assert corr.shape == (19,)
    assert np.median(corr) > 0.9
    assert corr.max() < 0.999  # the future is not the present
    assert corr.min() < np.median(corr) - 0.02  # a regime shift somewhere


def test_layer_statistics_by_hand():
    loads = np.array([[1.0, 1.0, 1.0, 5.0], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    stats = synthetic.layer_statistics(loads)  # the all-zero layer is ignored
    assert stats["max_over_mean"] == pytest.approx((2.5 + 1.0) / 2)
    assert stats["cv"] == pytest.approx((np.sqrt(3.0) / 2 + 0.0) / 2)


def test_window_correlation_by_hand():
    base = np.array([[1.0, 2.0, 3.0, 4.0]])
    windows = np.stack([base, base * 2, base[:, ::-1]])
    assert synthetic.window_correlation(windows) == pytest.approx([1.0, -1.0])


def real_statistics():
    """(hottest/mean, CV) medians over the MoE layers of each real file, if present."""
    found = []
    for path in sorted(REAL_TRACES.glob("*.json")):
        counts = np.array(json.loads(path.read_text())["logical_count"], dtype=np.float64)
        assert counts.shape == (61, 256)
        assert not counts[:3].any() and (counts[3:] > 0).all()
        stats = synthetic.layer_statistics(counts[3:])
        found.append((stats["max_over_mean"], stats["cv"]))
    return found


def test_synthetic_matches_real_statistics(default_windows):
    hottest, cv = synthetic_statistics(default_windows)
    # Documented ranges of the real data (SOURCE.md): 5-8x the mean, CV 0.74-0.95.
    assert 5.0 * 0.85 <= hottest <= 8.0 * 1.15
    assert 0.74 * 0.85 <= cv <= 0.95 * 1.15
    real = real_statistics()
    if real:  # the measured range of the real files, widened by 15%
        hot_lo, hot_hi = min(r[0] for r in real), max(r[0] for r in real)
        cv_lo, cv_hi = min(r[1] for r in real), max(r[1] for r in real)
        assert 5.0 <= hot_lo <= hot_hi <= 8.0 and 0.7 <= cv_lo <= cv_hi <= 0.97
        assert hot_lo * 0.85 <= hottest <= hot_hi * 1.15
        assert cv_lo * 0.85 <= cv <= cv_hi * 1.15
        for window in default_windows[::5]:
            stats = synthetic.layer_statistics(window)
            assert hot_lo * 0.85 <= stats["max_over_mean"] <= hot_hi * 1.15
            assert cv_lo * 0.85 <= stats["cv"] <= cv_hi * 1.15


def test_real_statistics_load_as_traces(tmp_path):
    """The SOURCE.md recipe turns a real file into a (1, 58, 256) trace load_trace accepts.

    Without the real files, a synthetic aggregate in the same format is used.
    """
    paths = sorted(REAL_TRACES.glob("*.json"))[:2]
    if paths:
        aggregates = [np.array(json.loads(p.read_text())["logical_count"]) for p in paths]
    else:
        aggregates = [np.vstack([np.zeros((3, 256)), w]) for w in
                      make_windows(synthetic.generate(synthetic.SyntheticSpec(
                          steps=20, layers=58, experts=256, seed=1)), 10)]
    for index, counts in enumerate(aggregates):
        path = tmp_path / f"real{index}.json"
        path.write_text(json.dumps({"load_history": [
            {"logical_expert_load": counts[3:].astype(int).tolist()}]}))
        trace = load_trace(path)
        assert trace.shape == (1, 58, 256)
        assert np.array_equal(trace[0], counts[3:].astype(int))
