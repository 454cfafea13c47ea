"""Reference policies (policies/*.py): validity, equality with the baseline, `--compare`,
and reference rows in an evolution run's leaderboard (ranked, never parents)."""

import ast
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import SMALL_TASK, cli, write_task
from evo_helpers import NO_SPEED, programs, run_in_process

import initial
from eplb import placement
from eplb.placement import Scenario
from evolve.fingerprint import structure_hash
from evolve.population import Population
from evolve.records import Program

ROOT = Path(__file__).resolve().parents[1]
RAISES = Path(__file__).resolve().parent / "candidates" / "raises.py"
POLICIES = ("deepseek_global", "no_replication", "ema_hierarchical", "waterfill_lpt",
            "flashlb_hotness", "swift_bounded")  # the baseline: initial.py
# (layers, experts, replicas, groups, nodes, gpus): hierarchical, global forced (4 % 3),
# no redundant slot, more than one extra replica per expert, a larger one
SHAPES = [(3, 16, 24, 4, 2, 4), (2, 16, 24, 4, 3, 6), (2, 8, 8, 2, 2, 4),
          (2, 8, 20, 2, 1, 4), (4, 64, 96, 8, 4, 16)]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"policy_{name}", ROOT / "policies" /
                                                  f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def weights(layers: int, experts: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    load = rng.zipf(1.6, (layers, experts)).clip(max=5000) * rng.integers(1, 50, (layers, 1))
    load[0, : experts // 4] = 0  # idle experts too
    return torch.from_numpy(load.astype(np.int64))


def arrays(result) -> list[np.ndarray]:
    return [t.numpy() for t in result]


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("shape", SHAPES)
def test_policy_gives_a_valid_placement(name, shape):
    layers, experts, replicas, groups, nodes, gpus = shape
    result = load(name).rebalance_experts(weights(layers, experts), replicas, groups, nodes,
                                          gpus)
    assert all(t.dtype == torch.int64 for t in result)
    scenario = Scenario("s", replicas, groups, nodes, gpus)
    assert placement.validate(*arrays(result), layers, experts, scenario) == []


@pytest.mark.parametrize("shape", SHAPES)
def test_global_matches_the_baseline_with_one_group_and_node(shape):
    layers, experts, replicas, groups, nodes, gpus = shape
    weight = weights(layers, experts, seed=1)
    baseline = arrays(initial.rebalance_experts(weight, replicas, groups, nodes, gpus))
    flat = arrays(initial.rebalance_experts(weight, replicas, 1, 1, gpus))
    global_ = arrays(load("deepseek_global").rebalance_experts(weight, replicas, groups, nodes,
                                                               gpus))
    for mine, theirs in zip(global_, flat, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    if groups % nodes:  # the baseline itself falls back to the global policy here
        np.testing.assert_array_equal(global_[0], baseline[0])
    elif nodes > 1:  # and differs from it where the hierarchy applies
        assert not np.array_equal(global_[0], baseline[0])


@pytest.mark.parametrize("experts,replicas", [(16, 24), (8, 8), (8, 20)])
def test_no_replication_fills_extra_slots_round_robin(experts, replicas):
    weight = weights(3, experts)
    phy2log, log2phy, logcnt = arrays(load("no_replication").rebalance_experts(
        weight, replicas, 2, 1, 4))
    np.testing.assert_array_equal(phy2log, np.tile(np.arange(replicas) % experts, (3, 1)))
    extras = replicas - experts
    expected = 1 + extras // experts + (np.arange(experts) < extras % experts)
    np.testing.assert_array_equal(logcnt, np.tile(expected, (3, 1)))
    if extras < experts:
        assert (logcnt[:, extras:] == 1).all() and (logcnt[:, :extras] == 2).all()
    assert log2phy[1, 0, 0] == 0 and (log2phy[:, :, 0] == np.arange(experts)).all()
    # the load plays no part
    other = load("no_replication").rebalance_experts(weight.flip(1), replicas, 2, 1, 4)
    np.testing.assert_array_equal(other[0].numpy(), phy2log)


def test_ema_without_history_is_the_baseline():
    ema = load("ema_hierarchical")
    weight = weights(3, 16, seed=2)
    baseline = arrays(initial.rebalance_experts(weight, 24, 4, 2, 4))
    for history in (None, torch.zeros((0, 3, 16), dtype=torch.int64)):
        got = arrays(ema.rebalance_experts(weight, 24, 4, 2, 4, history=history))
        for mine, theirs in zip(got, baseline, strict=True):
            np.testing.assert_array_equal(mine, theirs)


def test_ema_follows_the_history():
    """Expert 0 was hot in the past windows and is cold now: the EMA keeps replicas for it,
    the baseline (current window only) does not; a history equal to the current window changes
    nothing."""
    ema = load("ema_hierarchical")
    weight = torch.full((2, 16), 100, dtype=torch.int64)
    weight[:, 0] = 10
    weight[:, 5] = 400  # currently hot
    history = weight.repeat(3, 1, 1)
    history[:, :, 0] = 2000
    base = initial.rebalance_experts(weight, 24, 4, 2, 4)[2].numpy()
    got = ema.rebalance_experts(weight, 24, 4, 2, 4, history=history)
    assert placement.validate(*arrays(got), 2, 16, Scenario("s", 24, 4, 2, 4)) == []
    counts = got[2].numpy()
    assert (base[:, 0] == 1).all() and (counts[:, 0] > base[:, 0]).all()
    assert (counts[:, 5] <= base[:, 5]).all() and counts[:, 5].min() >= 1
    steady = ema.rebalance_experts(weight, 24, 4, 2, 4, history=weight.repeat(2, 1, 1))
    np.testing.assert_array_equal(steady[2].numpy(), base)
    with pytest.raises(ValueError, match="history has shape"):
        ema.rebalance_experts(weight, 24, 4, 2, 4, history=torch.zeros((1, 2, 8)))


def test_policies_are_self_contained():
    for name in POLICIES:
        text = (ROOT / "policies" / f"{name}.py").read_text()
        imports = {alias.name if isinstance(node, ast.Import) else node.module
                   for node in ast.walk(ast.parse(text))
                   if isinstance(node, ast.Import | ast.ImportFrom) for alias in node.names}
        assert imports <= {"numpy", "torch"}, (name, imports)
        assert "# EVOLVE-BLOCK-START" in text and "# EVOLVE-BLOCK-END" in text


# ---------------------------------------------------------------- --compare


def test_compare_prints_one_row_per_program(tmp_path):
    task = write_task(tmp_path)
    listed = ["initial.py", "policies/no_replication.py", "policies/deepseek_global.py",
              str(RAISES)]
    done = cli("--compare", *listed, "--task", task, "--results_dir", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    header = lines[0].split()
    assert header[:5] == ["program", "balancedness_gpu", "balancedness_slot", "time_ms",
                          "combined_score"]
    assert len(lines) == 1 + len(listed)
    for line, program in zip(lines[1:], listed, strict=True):
        assert line.split()[0] == program
    assert "FAILED: scenario tiny, window 0: rebalance_experts raised ValueError: candidate " \
           "gave up on purpose" in lines[-1]
    rows = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert [r["program"] for r in rows] == listed
    assert rows[-1]["error"] and "balancedness_gpu" not in rows[-1]
    base, plain, flat = rows[:3]
    assert plain["balancedness_gpu"] < base["balancedness_gpu"]
    for row, line in zip(rows[:3], lines[1:4], strict=True):
        cells = line.split()
        assert cells[1] == f"{row['balancedness_gpu']:.4f}"
        assert cells[4] == f"{row['combined_score']:.4f}"
        for key in ("migration", "rebalances"):  # printed when the evaluator reports them
            assert (key in header) == (key in row)


# ---------------------------------------------------------------- evolution leaderboard


def test_population_keeps_references_out_of_selection():
    seed = Program("seed", "a", 0, 0, patch_type="initial", valid=True, score=0.5,
                   code_hash="h1")
    ref = Program("ref-x", "b", 0, 0, patch_type="reference", valid=True, score=0.9,
                  code_hash="h2")
    population = Population(2, [seed, ref])
    assert population.by_id["ref-x"] is ref
    assert population.visible(None, 10) == [seed]
    assert population.best(0, 10) is seed
    assert population.twin(structure_hash("b")) is None
    assert population.twin(structure_hash("a")) is seed
    assert not population.holds(0, "h2")


def test_references_are_ranked_but_never_parents(tmp_path, monkeypatch, caplog):
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)  # offline operator: no LLM needed
    references = ["policies/deepseek_global.py", "policies/no_replication.py", str(RAISES),
                  "policies/absent.py"]
    overrides = ["evolution.num_islands=1", "evolution.max_in_flight=1",
                 "evolution.migration_interval=0", *NO_SPEED,
                 "task.engine.references=" + json.dumps(references)]
    reason, run_dir = run_in_process(tmp_path, "refs", [*overrides, "evolution.generations=4"])
    assert reason == "finished"
    rows = {p["id"]: p for p in programs(run_dir)}
    refs = {k: v for k, v in rows.items() if k.startswith("ref-")}
    assert sorted(refs) == ["ref-deepseek_global", "ref-no_replication", "ref-raises"]
    for p in refs.values():
        assert (p["generation"], p["island"], p["model"], p["patch_type"]) == \
            (0, 0, None, "reference")
    assert refs["ref-raises"]["valid"] == 0
    assert "candidate gave up on purpose" in refs["ref-raises"]["error"]
    assert "absent.py skipped: not found" in caplog.text  # logged, not fatal
    assert "reference ref-raises fails its evaluation" in caplog.text

    board = pd.read_csv(run_dir / "leaderboard.csv")
    ranked = dict(zip(board["id"], board["patch_type"], strict=True))
    assert ranked["ref-deepseek_global"] == ranked["ref-no_replication"] == "reference"
    assert "ref-raises" not in ranked and "seed" in ranked
    score = dict(zip(board["id"], board["score"], strict=True))
    # the global policy beats the seed on this task: it would be the favourite parent
    assert score["ref-deepseek_global"] > score["seed"] > score["ref-no_replication"]

    def children():
        return [p for p in programs(run_dir) if p["generation"] >= 1]

    assert sorted(p["generation"] for p in children()) == [1, 2, 3, 4]
    for p in children():
        assert not (p["parent_id"] or "").startswith("ref-")
        assert not (p["other_parent_id"] or "").startswith("ref-")

    reason, _ = run_in_process(tmp_path, "refs", [*overrides, "evolution.generations=6"])
    assert reason == "finished"  # resumed: references are not evaluated again
    again = {p["id"]: p for p in programs(run_dir) if p["id"].startswith("ref-")}
    assert {k: v["created_at"] for k, v in again.items()} == \
        {k: v["created_at"] for k, v in refs.items()}
    assert sorted(p["generation"] for p in children()) == [1, 2, 3, 4, 5, 6]
    assert not any((p["parent_id"] or "").startswith("ref-") for p in children())


def test_compare_shows_the_serving_columns(tmp_path):
    task = write_task(tmp_path, {**SMALL_TASK, "rebalance": {"expert_bytes": 44040192}})
    listed = ["policies/no_replication.py", "initial.py", "policies/swift_bounded.py"]
    done = cli("--compare", *listed, "--task", task, "--json")
    assert done.returncode == 0, done.stderr
    plain, base, bounded = json.loads(done.stdout)
    assert base["throughput_gain_vs_baseline"] == 0
    for row in (plain, bounded):
        assert row["throughput_gain_vs_baseline"] == pytest.approx(
            row["serving_throughput_vs_ideal"] / base["serving_throughput_vs_ideal"] - 1)
    assert plain["throughput_gain_vs_baseline"] < 0  # no replication is slower
    assert plain["migration_seconds"] == 0 < base["migration_seconds"]
    assert 0 < base["internode_transfers_per_token"] < 8
    assert 0 < base["serving_throughput_vs_ideal"] < base["throughput_vs_ideal"] < 1
    table = cli("--compare", *listed, "--task", task)
    header = table.stdout.splitlines()[0].split()
    for key in ("throughput_vs_ideal", "serving_throughput_vs_ideal", "migration_seconds",
                "internode_transfers_per_token", "throughput_gain_vs_baseline"):
        assert key in header
    assert table.stdout.splitlines()[2].split()[-1] == "+0.0000"
    # without the baseline among the programs there is nothing to compare against
    alone = json.loads(cli("--compare", listed[0], "--task", task, "--json").stdout)
    assert "throughput_gain_vs_baseline" not in alone[0]
