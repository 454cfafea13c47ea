"""Exported placements read the way the serving engines read them.

The loaders below re-implement, from the engines' documented behaviour (not their code,
and not our own readers), how each format is consumed:
  * vLLM-Ascend: per layer and device, `expert_map = full(num_logical, -1)`, then
    `expert_map[device_expert] = arange(len(device_expert))`: logical expert -> local slot;
  * SGLang (--init-expert-location): `physical_to_logical_map` [layers, num_physical],
    num_physical split evenly over the EP ranks, and logical_to_all_physical derived from
    it (every logical expert needs a slot);
  * vLLM: a policy class whose `rebalance_experts(weight, num_replicas, num_groups,
    num_nodes, num_ranks)` returns (phy2log, log2phy, logcnt).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import cli, write_task

import initial
from eplb import placement
from eplb.colocation import colocated_replicas, repair
from eplb.config import task_config_from_dict
from eplb.evaluator import load_windows
from eplb.exports import _literal, repair_for_export, sglang_map, vllm_policy_source
from eplb.placement import Scenario

TASK = {
    "name": "eplb-exports",
    "workload": "synthetic",
    "rebalance_interval": 100,
    "synthetic": {"steps": 300, "layers": 3, "experts": 16, "seed": 3},
    "scenarios": [
        {"name": "six", "num_replicas": 24, "num_groups": 4, "num_nodes": 3, "num_gpus": 6}],
    "timing": {"warmup": 0, "repeats": 1},
    "limits": {"timeout_s": 30, "memory_mb": 2048},
}
SIX = Scenario("six", 24, 4, 3, 6)
EXPERTS = 16


# ---------------------------------------------------------------- engine loaders


def vllm_ascend_load(data: dict, num_logical: int) -> np.ndarray:
    """Load a map as vLLM-Ascend does; assert what it needs; return phy2log [L, R]."""
    layers = sorted(data["layer_list"], key=lambda layer: layer["layer_id"])
    assert [layer["layer_id"] for layer in layers] == list(range(data["moe_layer_count"]))
    sizes, rows = set(), []
    for layer in layers:
        devices = sorted(layer["device_list"], key=lambda d: d["device_id"])
        assert len(devices) == layer["device_count"]
        held = set()
        for device in devices:
            experts = np.array(device["device_expert"], dtype=np.int64)
            assert ((experts >= 0) & (experts < num_logical)).all(), "expert out of range"
            expert_map = np.full(num_logical, -1, dtype=np.int64)
            expert_map[experts] = np.arange(len(experts))
            reachable = set(expert_map[expert_map >= 0].tolist())
            assert reachable == set(range(len(experts))), \
                f"layer {layer['layer_id']} device {device['device_id']}: unreachable slots"
            sizes.add(len(experts))
            held |= set(experts.tolist())
        assert held == set(range(num_logical)), "an expert is on no device"
        rows.append([e for device in devices for e in device["device_expert"]])
    assert len(sizes) == 1, f"per-device slot counts differ: {sizes}"
    return np.array(rows, dtype=np.int64)


def sglang_load(data: dict, num_logical: int, ep_size: int) -> np.ndarray:
    """Load an --init-expert-location mapping as SGLang does; return phy2log [L, P]."""
    phy2log = np.array(data["physical_to_logical_map"], dtype=np.int64)
    layers, num_physical = phy2log.shape
    assert num_physical % ep_size == 0, "physical experts do not split over the EP ranks"
    assert ((phy2log >= 0) & (phy2log < num_logical)).all(), "logical id out of range"
    logical_to_all_physical = [[[] for _ in range(num_logical)] for _ in range(layers)]
    for layer in range(layers):
        for physical, logical in enumerate(phy2log[layer]):
            logical_to_all_physical[layer][logical].append(physical)
    for layer in range(layers):
        for logical, slots in enumerate(logical_to_all_physical[layer]):
            assert slots, f"layer {layer}: logical expert {logical} has no physical slot"
            assert all(phy2log[layer, s] == logical for s in slots)
    return phy2log


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def task_file(tmp_path):
    return write_task(tmp_path, TASK)


@pytest.fixture(scope="module")
def last_window() -> np.ndarray:
    return load_windows(task_config_from_dict(TASK))[1][-1]


def baseline(window: np.ndarray, scenario: Scenario = SIX):
    return initial.rebalance_experts(torch.from_numpy(window), scenario.num_replicas,
                                     scenario.num_groups, scenario.num_nodes,
                                     scenario.num_gpus)


# ---------------------------------------------------------------- vLLM-Ascend


def test_the_engine_loader_rejects_an_unrepaired_map(last_window):
    """The issue's failure, seen by the loader: a repeated expert hides a slot."""
    raw = baseline(last_window)[0].numpy()
    assert colocated_replicas(raw, 6).sum() > 0
    slots = 24 // 6
    unrepaired = {"moe_layer_count": 3, "layer_list": [
        {"layer_id": layer, "device_count": 6, "device_list": [
            {"device_id": d, "device_expert": raw[layer, d * slots:(d + 1) * slots].tolist()}
            for d in range(6)]} for layer in range(3)]}
    with pytest.raises(AssertionError, match="unreachable slots"):
        vllm_ascend_load(unrepaired, EXPERTS)


def test_vllm_ascend_export_loads_in_the_engine(task_file, tmp_path, last_window):
    out = tmp_path / "eplb.json"
    done = cli("--program_path", "initial.py", "--task", task_file, "--export_map", out)
    assert done.returncode == 0, done.stderr
    phy2log = vllm_ascend_load(json.loads(out.read_text()), EXPERTS)
    repaired = repair(baseline(last_window)[0].numpy(), last_window, 6).phy2log
    np.testing.assert_array_equal(phy2log, repaired)  # round trip to our placement
    np.testing.assert_array_equal(placement.replica_counts(phy2log, EXPERTS),
                                  baseline(last_window)[2].numpy())


def test_repair_report_measures_the_cost(last_window):
    raw = baseline(last_window)[0].numpy()
    fixed, report = repair_for_export(raw, last_window, SIX)
    assert report["colocated_replicas"] == colocated_replicas(raw, 6).sum() == report["swaps"]
    assert report["balancedness_gpu_after"] >= report["balancedness_gpu_before"] - 0.02
    counts = placement.replica_counts(raw, EXPERTS)
    assert report["balancedness_gpu_after"] == pytest.approx(
        placement.measure(last_window.astype(float), fixed, counts, SIX).gpu)
    same, nothing = repair_for_export(fixed, last_window, SIX)
    assert same is fixed and nothing["swaps"] == 0 and nothing["colocated_replicas"] == 0


# ---------------------------------------------------------------- SGLang


def test_sglang_export_loads_in_the_engine(task_file, tmp_path, last_window):
    out = tmp_path / "expert_location.json"
    done = cli("--program_path", "initial.py", "--task", task_file, "--export_map", out,
               "--map_format", "sglang", "--dense_layers", 2)
    assert done.returncode == 0, done.stderr
    assert "(sglang)" in done.stdout and "after 2 dense ones" in done.stdout
    phy2log = sglang_load(json.loads(out.read_text()), EXPERTS, ep_size=6)
    assert phy2log.shape == (5, 24)
    np.testing.assert_array_equal(phy2log[0], phy2log[2])  # dense rows: copies, unused
    np.testing.assert_array_equal(phy2log[1], phy2log[2])
    repaired = repair(baseline(last_window)[0].numpy(), last_window, 6).phy2log
    np.testing.assert_array_equal(phy2log[2:], repaired)
    # the same placement as the vLLM-Ascend export
    ascend = tmp_path / "eplb.json"
    assert cli("--program_path", "initial.py", "--task", task_file,
               "--export_map", ascend).returncode == 0
    np.testing.assert_array_equal(vllm_ascend_load(json.loads(ascend.read_text()), EXPERTS),
                                  phy2log[2:])


def test_sglang_map_round_trip():
    rng = np.random.default_rng(0)
    phy2log = np.concatenate([np.tile(np.arange(8), (4, 1)), rng.integers(0, 8, (4, 8))], 1)
    data = json.loads(json.dumps(sglang_map(phy2log)))
    np.testing.assert_array_equal(sglang_load(data, 8, ep_size=4), phy2log)
    with pytest.raises(ValueError, match="dense_layers must be >= 0"):
        sglang_map(phy2log, -1)


@pytest.mark.parametrize("args,text", [
    (["--map_format", "sglang"], "--map_format needs --export_map"),
    (["--export_map", "{out}", "--dense_layers", "3"], "--dense_layers needs --map_format sglang"),
    (["--export_map", "{out}", "--map_format", "sglang", "--dense_layers", "-1"],
     "--dense_layers must be >= 0"),
    (["--export_map", "{out}", "--map_format", "onnx"], "invalid choice: 'onnx'"),
])
def test_format_usage_errors_exit_2(task_file, tmp_path, args, text):
    out = tmp_path / "out.json"
    done = cli("--program_path", "initial.py", "--task", task_file,
               *[a.format(out=out) for a in args])
    assert done.returncode == 2
    assert text in done.stderr
    assert not out.exists()


# ---------------------------------------------------------------- vLLM policy file

RUN_POLICY = """
import importlib.util, sys
import numpy as np, torch
for name in ("eplb", "evolve", "initial"{block_vllm}):
    sys.modules[name] = None  # importing any of them now raises ImportError
spec = importlib.util.spec_from_file_location("evolved_policy", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
policy = module.EvolvedEplbPolicy
print(policy.__mro__[1].__name__)
weight = torch.from_numpy(np.load(sys.argv[2]))
maps = policy.rebalance_experts(weight, 24, 4, 3, 6)
if len(sys.argv) > 3:
    maps = policy().rebalance_experts(weight.double().add(0.25), 24, 4, 3, 6)
for name, array in zip(("phy2log", "log2phy", "logcnt"), maps):
    assert array.dtype == torch.int64, array.dtype
    np.save(f"{{sys.argv[2]}}.{{name}}.npy", array.numpy())
"""

FAKE_VLLM = """
from abc import ABC, abstractmethod


class AbstractEplbPolicy(ABC):
    @classmethod
    @abstractmethod
    def rebalance_experts(cls, weight, num_replicas, num_groups, num_nodes, num_ranks):
        raise NotImplementedError
"""


def run_policy(tmp_path, policy, weight, fake_vllm=None, instance=False):
    """The policy file run in a fresh interpreter: returns (base class name, three maps)."""
    source = tmp_path / "weight.npy"
    np.save(source, weight)
    script = RUN_POLICY.format(block_vllm="" if fake_vllm else ', "vllm"')
    env = None
    if fake_vllm:
        env = {"PYTHONPATH": str(fake_vllm), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script, str(policy), str(source),
                           *(["instance"] if instance else [])],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    maps = [np.load(f"{source}.{name}.npy") for name in ("phy2log", "log2phy", "logcnt")]
    for name in ("phy2log", "log2phy", "logcnt"):
        (tmp_path / f"weight.npy.{name}.npy").unlink()
    source.unlink()
    return done.stdout.strip(), maps


def test_vllm_policy_runs_without_vllm_or_the_project(task_file, tmp_path, last_window):
    policy = tmp_path / "evolved_policy.py"
    done = cli("--program_path", "initial.py", "--task", task_file, "--export_map", policy,
               "--map_format", "vllm-policy")
    assert done.returncode == 0, done.stderr
    assert "class EvolvedEplbPolicy" in done.stdout
    base, maps = run_policy(tmp_path, policy, last_window)
    assert base == "object"
    for got, want in zip(maps, baseline(last_window), strict=True):
        np.testing.assert_array_equal(got, want.numpy())
    assert placement.validate(*maps, 3, EXPERTS, SIX) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evolved_policy.py", "task.yaml"]


def test_vllm_policy_subclasses_vllms_interface(tmp_path, last_window):
    fake = tmp_path / "fake"
    package = fake / "vllm" / "distributed" / "eplb" / "policy"
    package.mkdir(parents=True)
    for folder in (fake / "vllm", fake / "vllm" / "distributed", package.parent, package):
        (folder / "__init__.py").write_text("")
    (package / "abstract.py").write_text(FAKE_VLLM)
    policy = tmp_path / "evolved_policy.py"
    policy.write_text(vllm_policy_source(Path(initial.__file__).read_text(), "initial.py",
                                         "evolved_policy"))
    # called on an instance, with float loads (as vLLM may hand them): rounded to counts
    base, maps = run_policy(tmp_path, policy, last_window, fake_vllm=fake, instance=True)
    assert base == "AbstractEplbPolicy"
    for got, want in zip(maps, baseline(last_window), strict=True):
        np.testing.assert_array_equal(got, want.numpy())


@pytest.mark.parametrize("text", ["x = 1\n", "s = '''a'''\n", "p = 'a\\\\b'\n", "y = 2",
                                  "q = \"'\"\nz = 'end'"])
def test_embedded_source_is_exact(text):
    assert ast.literal_eval(_literal(text)) == text


def test_policy_of_a_program_that_does_not_compile(task_file, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def rebalance_experts(:\n")
    out = tmp_path / "policy.py"
    done = cli("--program_path", broken, "--task", task_file, "--export_map", out,
               "--map_format", "vllm-policy")
    assert done.returncode == 1 and "does not compile" in done.stderr
    assert not out.exists()


def test_real_trace_exports_load_in_both_engines(real_sglang, tmp_path):
    """From the real SGLang statistics: an SGLang map with the 3 dense layers back in
    front (61 rows, as the recorder counts them) and a vLLM-Ascend map, both loadable and
    the same placement."""
    sglang_out, ascend_out = tmp_path / "expert_location.json", tmp_path / "eplb.json"
    common = ("--program_path", "initial.py", "--workload", real_sglang)
    done = cli(*common, "--export_map", sglang_out, "--map_format", "sglang",
               "--dense_layers", 3)
    assert done.returncode == 0, done.stderr
    assert "repaired" in done.stdout
    assert cli(*common, "--export_map", ascend_out).returncode == 0
    sglang = sglang_load(json.loads(sglang_out.read_text()), 256, ep_size=32)
    assert sglang.shape == (61, 288)
    ascend = vllm_ascend_load(json.loads(ascend_out.read_text()), 256)
    np.testing.assert_array_equal(sglang[3:], ascend)
