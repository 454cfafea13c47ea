"""Expert maps (vLLM-Ascend JSON): round trip, every kind of broken map, CLI export / scoring."""

import copy
import json
import re
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
from eplb.expert_map import (
    MapError,
    check_map,
    load_map,
    map_to_placement,
    placement_to_map,
    save_map,
)
from eplb.placement import Scenario

ROOT = Path(__file__).resolve().parents[1]
RAISES = Path(__file__).resolve().parent / "candidates" / "raises.py"
TASK = {
    "name": "eplb-maps",
    "workload": "synthetic",
    "rebalance_interval": 100,
    "synthetic": {"steps": 400, "layers": 3, "experts": 16, "seed": 3},
    "scenarios": [
        {"name": "tiny", "num_replicas": 24, "num_groups": 4, "num_nodes": 2, "num_gpus": 4},
        {"name": "six", "num_replicas": 24, "num_groups": 4, "num_nodes": 3, "num_gpus": 6},
    ],
    "timing": {"warmup": 0, "repeats": 1},
    "limits": {"timeout_s": 30, "memory_mb": 2048},
}
TINY = Scenario("tiny", 24, 4, 2, 4)
SIX = Scenario("six", 24, 4, 3, 6)
EXPERTS = 16


def placed(weight: np.ndarray, scenario: Scenario) -> np.ndarray:
    """initial.py's phy2log for one window, repaired as the export does."""
    phy2log, _, _ = initial.rebalance_experts(
        torch.from_numpy(weight), scenario.num_replicas, scenario.num_groups,
        scenario.num_nodes, scenario.num_gpus)
    return repair(phy2log.numpy(), weight, scenario.num_gpus).phy2log


def spread(rng, layers: int, experts: int, replicas: int, gpus: int) -> np.ndarray:
    """A random placement with no expert twice on a GPU: each layer's replicas, sorted by
    expert (each expert at most `gpus` times), dealt round-robin over the GPUs."""
    rows = []
    for _ in range(layers):
        extra = rng.choice(np.repeat(np.arange(experts), gpus - 1), replicas - experts,
                           replace=False)
        dealt = np.sort(np.concatenate([np.arange(experts), extra]))
        by_gpu = dealt.reshape(replicas // gpus, gpus).T  # item i on GPU i % gpus
        relabel = rng.permutation(experts)
        rows.append(rng.permuted(relabel[by_gpu], axis=1).ravel())
    return np.array(rows)


@pytest.fixture(scope="module")
def good_map() -> dict:
    weight = np.random.default_rng(0).integers(0, 1000, (3, EXPERTS))
    return placement_to_map(placed(weight, TINY), TINY.num_gpus)


@pytest.fixture
def task_file(tmp_path):
    return write_task(tmp_path, TASK)


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("layers,experts,replicas,gpus", [(3, 16, 24, 4), (2, 8, 8, 8),
                                                         (5, 32, 64, 16)])
def test_round_trip_is_exact(tmp_path, layers, experts, replicas, gpus):
    phy2log = spread(np.random.default_rng(layers), layers, experts, replicas, gpus)
    assert not colocated_replicas(phy2log, gpus).any()
    data = placement_to_map(phy2log, gpus)
    assert data["moe_layer_count"] == layers
    assert [entry["layer_id"] for entry in data["layer_list"]] == list(range(layers))
    first = data["layer_list"][1]["device_list"][gpus - 1]
    assert first == {"device_id": gpus - 1,
                     "device_expert": phy2log[1, -(replicas // gpus):].tolist()}
    scenario = Scenario("s", replicas, 1, 1, gpus)
    path = tmp_path / "map.json"
    save_map(path, data)
    again = map_to_placement(load_map(path), experts, scenario)
    assert again.dtype == np.int64
    np.testing.assert_array_equal(again, phy2log)
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_devices_are_placed_by_device_id(good_map):
    shuffled = copy.deepcopy(good_map)
    shuffled["layer_list"].reverse()
    for layer in shuffled["layer_list"]:
        layer["device_list"].reverse()
    np.testing.assert_array_equal(map_to_placement(shuffled, EXPERTS, TINY),
                                  map_to_placement(good_map, EXPERTS, TINY))


def test_placement_to_map_needs_even_devices():
    with pytest.raises(MapError, match="24 slots do not split evenly over 5 devices"):
        placement_to_map(np.zeros((2, 24), dtype=np.int64), 5)


# ---------------------------------------------------------------- broken maps


def _layer(data, i):
    return data["layer_list"][i]


def _device(data, i, j):
    return data["layer_list"][i]["device_list"][j]


def _set(d, key, value):
    d[key] = value


def _steal_expert(data, layer, expert, instead):
    for device in _layer(data, layer)["device_list"]:
        device["device_expert"] = [instead if e == expert else e
                                   for e in device["device_expert"]]


def _twice(experts):
    experts[3] = experts[0]


BROKEN = {
    "layer count": (lambda d: _set(d, "moe_layer_count", 4),
                    ["map: moe_layer_count 4 but layer_list has 3 layers",
                     "map: layer_id 3 is missing (layer ids must be 0..3, each once)"]),
    "layer dropped": (lambda d: d["layer_list"].pop(1),
                      ["map: moe_layer_count 3 but layer_list has 2 layers",
                       "map: layer_id 1 is missing"]),
    "layer twice": (lambda d: _set(_layer(d, 1), "layer_id", 2),
                    ["layer_list[2] (layer_id 2): layer_id 2 appears twice",
                     "map: layer_id 1 is missing"]),
    "layer out of range": (lambda d: _set(_layer(d, 2), "layer_id", 7),
                           ["layer_list[2] (layer_id 7): layer_id outside [0, 3)"]),
    "device_count": (lambda d: _set(_layer(d, 1), "device_count", 5),
                     ["layer_list[1] (layer_id 1): device_count 5 but device_list has 4 "
                      "devices"]),
    "scenario gpus": (lambda d: (_layer(d, 0)["device_list"].pop(),
                                 _set(_layer(d, 0), "device_count", 3)),
                      ["layer_list[0] (layer_id 0): 3 devices, but the scenario has 4 GPUs"]),
    "device twice": (lambda d: _set(_device(d, 2, 3), "device_id", 0),
                     ["layer_list[2] (layer_id 2), device_list[3] (device_id 0): device_id 0 "
                      "appears twice in the layer"]),
    "device out of range": (lambda d: _set(_device(d, 2, 3), "device_id", 4),
                            ["layer_list[2] (layer_id 2), device_list[3] (device_id 4): "
                             "device_id outside [0, 4)"]),
    "unknown expert": (lambda d: _device(d, 2, 3)["device_expert"].__setitem__(1, 16),
                       ["layer_list[2] (layer_id 2), device_list[3] (device_id 3), "
                        "device_expert[1]: unknown expert 16 (ids are 0..15)"]),
    "negative expert": (lambda d: _device(d, 0, 1)["device_expert"].__setitem__(0, -1),
                        ["layer_list[0] (layer_id 0), device_list[1] (device_id 1), "
                         "device_expert[0]: unknown expert -1"]),
    "float expert": (lambda d: _device(d, 1, 2)["device_expert"].__setitem__(4, 2.0),
                     ["layer_list[1] (layer_id 1), device_list[2] (device_id 2), "
                      "device_expert[4]: expert id 2.0 is not an integer"]),
    "string expert": (lambda d: _device(d, 1, 0)["device_expert"].__setitem__(5, "3"),
                      ["device_list[0] (device_id 0), device_expert[5]: expert id '3' is not "
                       "an integer"]),
    "uneven": (lambda d: _device(d, 1, 2)["device_expert"].append(0),
               ["layer_list[1] (layer_id 1), device_list[2] (device_id 2): 7 experts, but "
                "layer_id 0, device_id 0 has 6: every device needs the same number of slots"]),
    "expert on no device": (lambda d: _steal_expert(d, 2, 5, 6),
                            ["layer_list[2] (layer_id 2): expert 5 is on no device"]),
    "expert twice on a device": (lambda d: _twice(_device(d, 1, 2)["device_expert"]),
                                 ["layer_list[1] (layer_id 1), device_list[2] (device_id 2), "
                                  "device_expert[3]: expert ",
                                  "is already at device_expert[0]; vLLM-Ascend maps an expert "
                                  "to one slot per device"]),
    "missing layer_list": (lambda d: d.pop("layer_list"), ["map: missing key 'layer_list'"]),
    "missing device_list": (lambda d: _layer(d, 1).pop("device_list"),
                            ["layer_list[1] (layer_id 1): missing key 'device_list'"]),
    "missing device_expert": (lambda d: _device(d, 0, 2).pop("device_expert"),
                              ["layer_list[0] (layer_id 0), device_list[2]: missing key "
                               "'device_expert'"]),
    "layer_list type": (lambda d: _set(d, "layer_list", {"0": []}),
                        ["map: 'layer_list' must be list, got dict"]),
    "layer_id type": (lambda d: _set(_layer(d, 0), "layer_id", "0"),
                      ["layer_list[0]: 'layer_id' must be int, got str '0'",
                       "map: layer_id 0 is missing"]),
    "bool count": (lambda d: _set(d, "moe_layer_count", True),
                   ["map: 'moe_layer_count' must be int, got bool True"]),
    "device not an object": (lambda d: _layer(d, 2)["device_list"].__setitem__(1, [1, 2]),
                             ["layer_list[2] (layer_id 2), device_list[1]: expected an "
                              "object, got list"]),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_map_names_the_place(good_map, name):
    data = copy.deepcopy(good_map)
    damage, expected = BROKEN[name]
    damage(data)
    with pytest.raises(MapError) as caught:
        check_map(data, EXPERTS, TINY)
    message = str(caught.value)
    assert message.startswith("invalid expert map:")
    for text in expected:
        assert text in message, message
    check_map(good_map, EXPERTS, TINY)  # the fixture itself is untouched and valid


def test_not_a_mapping_and_bad_json(tmp_path):
    with pytest.raises(MapError, match="map: expected an object, got list"):
        map_to_placement([1, 2], EXPERTS, TINY)
    path = tmp_path / "eplb.json"
    path.write_text('{"moe_layer_count": 3, "layer_list": [{"layer_id": 0,')
    with pytest.raises(MapError, match=re.escape(f"expert map {path} is not valid JSON")):
        load_map(path)
    with pytest.raises(MapError, match="expert map not found"):
        load_map(tmp_path / "absent.json")


def test_many_problems_are_capped(good_map):
    data = copy.deepcopy(good_map)
    for layer in data["layer_list"]:
        for device in layer["device_list"]:
            device["device_expert"] = [99] * 6
    with pytest.raises(MapError, match=r"\.\.\. and 52 more"):
        check_map(data, EXPERTS, TINY)


# ---------------------------------------------------------------- CLI


def test_export_then_score_the_map(task_file, tmp_path):
    task = task_config_from_dict(TASK)
    _, windows = load_windows(task)
    assert len(windows) == 4
    out = tmp_path / "eplb.json"
    done = cli("--program_path", "initial.py", "--task", task_file, "--export_map", out,
               "--scenario", "six")
    assert done.returncode == 0, done.stderr
    assert "window 3" in done.stdout and "scenario six" in done.stdout
    phy2log = map_to_placement(load_map(out), EXPERTS, SIX)
    np.testing.assert_array_equal(phy2log, placed(windows[-1], SIX))  # the last window
    raw = initial.rebalance_experts(torch.from_numpy(windows[-1]), 24, 4, 3, 6)[0].numpy()
    colocated = colocated_replicas(raw, 6)
    assert colocated.sum() > 0 and not colocated_replicas(phy2log, 6).any()
    assert (f"repaired {colocated.sum()} colocated replicas in {np.count_nonzero(colocated)} "
            "of 3 layers with") in done.stdout

    results = tmp_path / "results"
    done = cli("--expert_map", out, "--task", task_file, "--results_dir", results,
               "--scenario", "six")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((results / "metrics.json").read_text())
    counts = placement.replica_counts(phy2log, EXPERTS)
    expected = [placement.measure(w.astype(np.float64), phy2log, counts, SIX) for w in windows]
    assert [r["window"] for r in metrics["per_window"]] == [0, 1, 2, 3]
    for row, balance in zip(metrics["per_window"], expected, strict=True):
        assert row["balancedness_gpu"] == pytest.approx(balance.gpu, abs=1e-12)
        assert row["balancedness_slot"] == pytest.approx(balance.slot, abs=1e-12)
        assert row["balancedness_node"] == pytest.approx(balance.node, abs=1e-12)
    mean = np.mean([b.gpu for b in expected])
    assert metrics["balancedness_gpu"] == pytest.approx(mean, abs=1e-12)
    assert f"{'mean':>8}{mean:>10.4f}" in done.stdout
    assert "static map, no rebalancing" in done.stdout


def test_export_window_and_scenario(task_file, tmp_path):
    six = SIX
    _, windows = load_windows(task_config_from_dict(TASK))
    out = tmp_path / "six.json"
    done = cli("--program_path", "initial.py", "--task", task_file, "--export_map", out,
               "--map_window", 1, "--scenario", "six")
    assert done.returncode == 0, done.stderr
    data = load_map(out)
    assert {layer["device_count"] for layer in data["layer_list"]} == {6}
    np.testing.assert_array_equal(map_to_placement(data, EXPERTS, six),
                                  placed(windows[1], six))
    # scored against the 4-GPU scenario, the 6-device map is refused with its location
    done = cli("--expert_map", out, "--task", task_file)
    assert done.returncode == 2
    assert "layer_list[0] (layer_id 0): 6 devices, but the scenario has 4 GPUs" in done.stderr


def test_export_without_a_repair_is_refused_with_the_place(task_file, tmp_path):
    """On 4 GPUs the baseline gives an expert 5 replicas: some GPU must hold it twice."""
    out = tmp_path / "eplb.json"
    for fmt in ("vllm-ascend", "sglang"):
        done = cli("--program_path", "initial.py", "--task", task_file, "--export_map", out,
                   "--map_format", fmt)
        assert done.returncode == 1
        assert re.search(r"cannot export a loadable map: layer \d+, device \d+: expert \d+ has "
                         r"5 replicas but there are only 4 devices", done.stderr), done.stderr
        assert not out.exists()


def test_broken_map_exits_2_with_the_place(task_file, tmp_path, good_map):
    data = copy.deepcopy(good_map)
    _device(data, 1, 3)["device_expert"][2] = 40
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    done = cli("--expert_map", path, "--task", task_file)
    assert done.returncode == 2
    assert ("layer_list[1] (layer_id 1), device_list[3] (device_id 3), device_expert[2]: "
            "unknown expert 40") in done.stderr
    path.write_text("{not json")
    done = cli("--expert_map", path, "--task", task_file)
    assert done.returncode == 2 and "is not valid JSON" in done.stderr


@pytest.mark.parametrize("args,text", [
    (["--export_map", "x.json"], "--export_map needs --program_path"),
    (["--program_path", "initial.py", "--map_window", "1"], "--map_window needs --export_map"),
    (["--program_path", "initial.py", "--expert_map", "x.json"], "exactly one of"),
    (["--program_path", "initial.py", "--export_map", "{out}", "--map_window", "4"],
     "--map_window 4: the trace has 4 windows (0..3)"),
    (["--program_path", "initial.py", "--export_map", "{out}", "--scenario", "nope"],
     "unknown scenario 'nope'; the task has tiny, six"),
])
def test_export_usage_errors_exit_2(task_file, tmp_path, args, text):
    out = tmp_path / "eplb.json"
    done = cli(*[a.format(out=out) for a in args], "--task", task_file)
    assert done.returncode == 2
    assert text in done.stderr
    assert not out.exists()


def test_failing_candidate_export_exits_1(task_file, tmp_path):
    out = tmp_path / "eplb.json"
    done = cli("--program_path", RAISES, "--task", task_file, "--export_map", out)
    assert done.returncode == 1
    assert "candidate gave up on purpose" in done.stderr
    assert not out.exists()
