"""`python evaluate.py` as a subprocess: exit 0 valid, 1 failing candidate, 2 usage error."""

import json
from pathlib import Path

import pytest
from cli_helpers import cli, write_task

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = Path(__file__).resolve().parent / "candidates"
@pytest.fixture
def task_file(tmp_path):
    return write_task(tmp_path)


def test_valid_candidate_exits_0_and_prints_metrics(task_file, tmp_path):
    results = tmp_path / "results"
    done = cli("--program_path", "initial.py", "--task", task_file, "--results_dir", results)
    assert done.returncode == 0, done.stderr
    for text in ("tiny", "balancedness_gpu", "speed_score", "combined_score",
                 "windows scored: 2"):
        assert text in done.stdout
    metrics = json.loads((results / "metrics.json").read_text())
    assert json.loads((results / "correct.json").read_text())["correct"] is True
    assert f"combined_score {metrics['combined_score']:.4f}" in done.stdout
    assert 0 < metrics["combined_score"] <= 1


def test_json_output_with_overrides(task_file):
    done = cli("--program_path", "initial.py", "--task", task_file, "--json",
               "--set", "rebalance_interval=150", "--set", "synthetic.seed=2")
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert metrics["windows_scored"] == 1  # 300 steps / 150 = 2 windows
    assert metrics["workload"] == "synthetic(seed=2)"
    assert set(metrics["scenarios"]) == {"tiny"}


def test_failing_candidate_exits_1(task_file):
    done = cli("--program_path", CANDIDATES / "raises.py", "--task", task_file)
    assert done.returncode == 1
    assert "candidate failed" in done.stderr
    assert "candidate gave up on purpose" in done.stderr
    assert "combined_score" not in done.stdout


def test_missing_program_exits_2(task_file, tmp_path):
    done = cli("--program_path", tmp_path / "nope.py", "--task", task_file)
    assert done.returncode == 2
    assert "program not found" in done.stderr


def test_missing_trace_exits_2(task_file):
    done = cli("--program_path", "initial.py", "--task", task_file,
               "--workload", "/nonexistent.json")
    assert done.returncode == 2
    assert "trace not found" in done.stderr and "/nonexistent.json" in done.stderr


def test_unknown_config_key_exits_2(task_file):
    done = cli("--program_path", "initial.py", "--task", task_file, "--set", "bogus=1")
    assert done.returncode == 2
    assert "bogus" in done.stderr
    for key in ("rebalance_interval", "scenarios", "synthetic", "workload"):
        assert key in done.stderr  # the valid keys are listed


def test_corrupt_trace_exits_2(task_file, tmp_path):
    trace = tmp_path / "expert-load.json"
    trace.write_text('{"load_history": [{"logical_expert_load": [[1, 2], [3, 4]]}, {"logi')
    done = cli("--program_path", "initial.py", "--task", task_file, "--workload", trace)
    assert done.returncode == 2
    assert "truncated or not valid JSON" in done.stderr


@pytest.mark.parametrize("args,text", [
    (["--set", "scenarios=[{name: bad, num_replicas: 30, num_groups: 4, num_nodes: 2, "
      "num_gpus: 4}]"], "num_replicas 30 is not divisible by num_gpus 4"),
    (["--set", "rebalance_interval=many"], "rebalance_interval must be int"),
    (["--set", "rebalance_interval=1000"], "fewer than two windows"),
    (["--set", "novalue"], "must look like section.key=value"),
])
def test_bad_task_settings_exit_2(task_file, args, text):
    done = cli("--program_path", "initial.py", "--task", task_file, *args)
    assert done.returncode == 2, done.stderr
    assert text in done.stderr


def test_missing_task_file_exits_2(tmp_path):
    done = cli("--program_path", "initial.py", "--task", tmp_path / "missing.yaml")
    assert done.returncode == 2
    assert "config file not found" in done.stderr


def test_missing_required_flag_exits_2():
    done = cli("--workload", "synthetic")
    assert done.returncode == 2
    assert "--program_path" in done.stderr
