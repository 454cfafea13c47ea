"""SGLang expert-distribution recorder output as a workload: files, folders, lists, windows."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import cli, write_task

from eplb import sglang_trace
from eplb.config import task_config_from_dict
from eplb.evaluator import evaluate_program, load_windows
from eplb.workload import WorkloadError

INITIAL = Path(__file__).resolve().parents[1] / "initial.py"
DENSE, LAYERS, EXPERTS = 2, 3, 16
TASK = {
    "name": "eplb-sglang",
    "rebalance_interval": 100,
    "scenarios": [{"name": "six", "num_replicas": 24, "num_groups": 4, "num_nodes": 3,
                   "num_gpus": 6}],
    "timing": {"warmup": 0, "repeats": 1},
    "limits": {"timeout_s": 30, "memory_mb": 2048},
}


def counts(seed: int, passes: int | None = None) -> np.ndarray:
    """Recorder-like counts: DENSE all-zero layers, then LAYERS MoE layers (whole floats)."""
    shape = (LAYERS, EXPERTS) if passes is None else (passes, LAYERS, EXPERTS)
    moe = np.random.default_rng(seed).integers(1, 500, shape).astype(np.float64)
    zeros = np.zeros((*shape[:-2], DENSE, EXPERTS))
    return np.concatenate([zeros, moe], axis=-2)


def write_json(path: Path, array) -> Path:
    path.write_text(json.dumps({"logical_count": np.asarray(array).tolist()}))
    return path


def write_pt(path: Path, array) -> Path:
    torch.save({"logical_count": torch.tensor(array), "rank": 0}, path)
    return path


def windows_of(spec, **task) -> tuple[str, np.ndarray]:
    return load_windows(task_config_from_dict({**TASK, **task}), str(spec))


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three aggregate files named out of creation order."""
    root = tmp_path / "stats"
    root.mkdir()
    for name, seed in (("b.json", 1), ("a.json", 0), ("c.json", 2)):
        write_json(root / name, counts(seed))
    return root


def test_folder_of_aggregates_one_window_per_file(folder, capsys):
    name, windows = windows_of(folder)
    assert windows.dtype == np.int64 and windows.shape == (3, LAYERS, EXPERTS)
    for window, seed in zip(windows, (0, 1, 2), strict=True):  # a, b, c: by file name
        np.testing.assert_array_equal(window, counts(seed)[DENSE:])
    assert name.startswith("sglang:stats (3 files, 3 windows")
    assert "dropped 2 leading all-zero layers (dense layers), 3 MoE layers kept" in name
    assert "note: SGLang trace stats: dropped 2 leading all-zero layers" in capsys.readouterr().err


@pytest.mark.parametrize("interval", [1, 100, 5000])
def test_an_aggregate_is_one_window_whatever_the_interval(folder, interval):
    _, windows = windows_of(folder, rebalance_interval=interval)
    assert len(windows) == 3


def test_list_of_files_keeps_the_order_given(folder):
    spec = ",".join(str(folder / n) for n in ("c.json", "a.json"))
    _, windows = windows_of(spec)
    np.testing.assert_array_equal(windows, np.stack([counts(2), counts(0)])[:, DENSE:])


def test_per_pass_files_are_cut_by_the_interval(tmp_path):
    passes = counts(5, passes=7)  # 7 passes, interval 3: two windows, the 7th pass dropped
    pt = write_pt(tmp_path / "passes.pt", passes)
    aggregate = write_json(tmp_path / "total.json", counts(6))
    name, windows = windows_of(f"{pt},{aggregate}", rebalance_interval=3)
    assert windows.shape == (3, LAYERS, EXPERTS)
    np.testing.assert_array_equal(windows[0], passes[0:3, DENSE:].sum(axis=0))
    np.testing.assert_array_equal(windows[1], passes[3:6, DENSE:].sum(axis=0))
    np.testing.assert_array_equal(windows[2], counts(6)[DENSE:])
    _, capped = windows_of(f"{pt},{aggregate}", rebalance_interval=3, max_windows=2)
    np.testing.assert_array_equal(capped, windows[:2])


def test_a_single_pt_file_with_passes(tmp_path):
    path = write_pt(tmp_path / "record.pt", counts(3, passes=4))
    assert sglang_trace.is_sglang_file(path)
    _, windows = windows_of(path, rebalance_interval=2)
    assert windows.shape == (2, LAYERS, EXPERTS)


def test_only_leading_zero_layers_are_dropped(tmp_path):
    first, second = counts(0), counts(1)
    first[DENSE + 1] = second[DENSE + 1] = 0  # an idle MoE layer in the middle stays
    first[0, 3] = 5  # a "dense" row with load in one file keeps every layer
    write_json(tmp_path / "x.json", first)
    write_json(tmp_path / "y.json", second)
    name, windows = windows_of(tmp_path)
    assert windows.shape == (2, DENSE + LAYERS, EXPERTS) and "dropped" not in name
    assert not windows[:, DENSE + 1].any()


def test_load_history_json_is_not_taken_for_sglang(tmp_path):
    path = tmp_path / "expert-load.json"
    path.write_text(json.dumps({"load_history": [{"logical_expert_load": [[1, 2]]}]}))
    assert not sglang_trace.is_sglang_file(path)
    assert sglang_trace.sources(str(path), Path) is None
    assert not sglang_trace.is_sglang_file(tmp_path / "absent.json")


def test_evaluation_on_an_sglang_folder(folder):
    task = task_config_from_dict({**TASK, "workload": str(folder)})
    result = evaluate_program(INITIAL, task)
    assert result["correct"], result["error"]
    assert result["metrics"]["workload"].startswith("sglang:stats")
    assert result["metrics"]["windows_scored"] == 2


# ---------------------------------------------------------------- errors


def damaged(tmp_path, name, content) -> Path:
    good = write_json(tmp_path / "good.json", counts(0))
    bad = tmp_path / name
    if isinstance(content, str):
        bad.write_text(content)
    else:
        write_json(bad, content)
    return f"{good},{bad}"


@pytest.mark.parametrize("name,content,message", [
    ("keyless.json", '{"counts": [[1]]}', "has no 'logical_count' key"),
    ("broken.json", '{"logical_count": [[1, 2', "is not valid JSON"),
    ("ragged.json", '{"logical_count": [[1, 2], [3]]}', "is not a rectangular array"),
    ("flat.json", '{"logical_count": [1, 2, 3]}',
     "must be [layers, experts] or [passes, layers, experts]; got shape (3,)"),
    ("narrow.json", np.ones((DENSE + LAYERS, 8)),
     "has 5 layers x 8 experts, but good.json has 5 x 16"),
    ("negative.json", -counts(1), "negative load"),
    ("fraction.json", counts(1) + 0.5, "fractional token counts"),
])
def test_bad_files_are_clear_errors(tmp_path, name, content, message):
    with pytest.raises(WorkloadError, match="SGLang trace|trace") as caught:
        windows_of(damaged(tmp_path, name, content))
    assert message in str(caught.value)
    assert name in str(caught.value)


def test_too_few_windows_and_other_errors(tmp_path):
    one = write_json(tmp_path / "one.json", counts(0))
    with pytest.raises(WorkloadError, match="fewer than two windows|1 window; the protocol"):
        windows_of(one)
    short = write_pt(tmp_path / "short.pt", counts(1, passes=2))
    with pytest.raises(WorkloadError, match="2 passes, fewer than one window of "
                                            "rebalance_interval 3"):
        windows_of(f"{one},{short}", rebalance_interval=3)
    zero = write_json(tmp_path / "zero.json", np.zeros((4, 8)))
    with pytest.raises(WorkloadError, match="every layer of every file is zero"):
        windows_of(f"{zero},{zero}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WorkloadError, match="holds no .json or .pt files"):
        windows_of(empty)
    with pytest.raises(WorkloadError, match="trace not found"):
        windows_of(f"{one},{tmp_path / 'absent.json'}")


def test_cli_reports_a_bad_trace_with_exit_2(tmp_path):
    spec = damaged(tmp_path, "keyless.json", '{"counts": [[1]]}')
    done = cli("--program_path", "initial.py", "--task", write_task(tmp_path, TASK),
               "--workload", spec)
    assert done.returncode == 2 and "has no 'logical_count' key" in done.stderr


# ---------------------------------------------------------------- the real files


def test_real_files_load_as_windows(real_sglang, capsys):
    task = task_config_from_dict({**TASK, "scenarios": [
        {"name": "ds", "num_replicas": 288, "num_groups": 8, "num_nodes": 4, "num_gpus": 32}]})
    name, windows = load_windows(task, str(real_sglang))
    files = sorted(real_sglang.glob("*.json"))
    assert windows.shape == (len(files), 58, 256)
    for window, path in zip(windows, files, strict=True):
        raw = np.array(json.loads(path.read_text())["logical_count"])
        np.testing.assert_array_equal(window, raw[3:].astype(np.int64))
    assert "dropped 3 leading all-zero layers (dense layers), 58 MoE layers kept" in name
    assert "dropped 3 leading all-zero layers" in capsys.readouterr().err


def test_real_files_evaluate_from_the_cli(real_sglang, tmp_path):
    results = tmp_path / "results"
    done = cli("--program_path", "initial.py", "--workload", real_sglang,
               "--results_dir", results)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((results / "metrics.json").read_text())
    assert metrics["workload"].startswith("sglang:sglang-ep-statistics (8 files, 8 windows")
    assert metrics["windows_scored"] == 7
    assert metrics["colocated_replicas"] > 0
