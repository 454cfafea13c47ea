"""Config checks: every bad value is refused with a message naming the key, the value and
what is allowed, before `run_evo.py` writes anything."""

from __future__ import annotations

import pytest

import run_evo
from evolve.config import ConfigError, apply_overrides, compose, run_config_from_dict
from evolve.selection import PARENT_SELECTORS

ROOT = run_evo.PROJECT_ROOT


def build(*overrides: str):
    return run_config_from_dict(compose(ROOT / "configs", "eplb_example", list(overrides)))


def test_the_defaults_pass():
    config = build()
    assert config.evolution.parent_selection in PARENT_SELECTORS


# (override, words the message must hold: the key, the value, what is allowed)
BAD_VALUES = [
    ("evolution.parent_selection=tournament",
     ["evolution.selection_options.alpha", "tournament", "size"]),
    ("evolution.parent_selection=roulette",
     ["evolution.parent_selection", "roulette", "power_law, tournament, weighted_sigmoid"]),
    ("evolution.selection_options={alpha: fast}",
     ["evolution.selection_options.alpha", "fast", "number"]),
    ("llm.retry.max_retries=-1", ["llm.retry.max_retries", "-1", ">= 0"]),
    ("llm.models[0].temperatures=[]", ["llm.models[0].temperatures", "[]", "at least one"]),
    ("llm.selector=bogus", ["llm.selector", "bogus", "'ucb', 'fixed'"]),
    ("evaluation.backend=ray", ["evaluation.backend", "ray", "'local', 'dask'"]),
    ("evolution.patch_types={diff: 0.5, full: 0.2}",
     ["evolution.patch_types", "summing to 1", "0.7"]),
    ("evolution.patch_types={diff: 1.5, rewrite: -0.5}",
     ["evolution.patch_types.rewrite", "diff, full, cross"]),
    ("evolution.num_islands=0", ["evolution.num_islands", "0", ">= 1"]),
    ("evaluation.watchdog_s=0", ["evaluation.watchdog_s", "> 0"]),
    ("evaluation.n_jobs=0", ["evaluation.n_jobs", ">= 1"]),
    ("budget.max_cost_usd=-5", ["budget.max_cost_usd", "-5", ">= 0"]),
    ("evolution.literal_variants=0", ["evolution.literal_variants", "0", ">= 1"]),
    ("evolution.memory_children=-1", ["evolution.memory_children", "-1", ">= 0"]),
    ("evolution.memory_ledger=-2", ["evolution.memory_ledger", "-2", ">= 0"]),
    ("evolution.summary_every=-1", ["evolution.summary_every", "-1", ">= 0"]),
    ("evolution.adaptive_patch_types=maybe", ["evolution.adaptive_patch_types", "bool"]),
    ("task.engine.directions={speed: ''}",
     ["task.engine.directions.speed", "''", "non-empty texts"]),
]


def _models_override(**fields) -> str:
    model = {"name": "m", "temperatures": [0.5], "max_tokens": 100, "context_window": 1000}
    model.update(fields)
    return "llm.models=[{" + ", ".join(f"{k}: {v}" for k, v in model.items()) + "}]"


BAD_VALUES += [
    (_models_override(context_window=100), ["llm.models[0].context_window", "max_tokens"]),
    (_models_override(temperatures=[-1]), ["llm.models[0].temperatures[0]", "-1"]),
    ("llm.models=[{name: a}, {name: a}]", ["llm.models", "names must differ"]),
]


@pytest.mark.parametrize(("override", "words"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_refused_by_name(override, words):
    with pytest.raises(ConfigError) as caught:
        build(override)
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))


# the task's own options, its engine: section, its description's placeholders
BAD_TASK = [
    ("task.history_windows=-1", ["task.history_windows", ">= 0", "-1"]),
    ("task.engine.entry=nowhere:Task", ["task engine.entry='nowhere:Task'", "No module"]),
    ("task.engine.entry=eplb", ["task engine.entry='eplb'", "module:Class"]),
    ("task.engine.description='{no_such_option} windows'",
     ["engine.description", "no_such_option", "history_windows"]),
    ("task.engine.initial_program=missing.py", ["engine.initial_program", "missing.py"]),
    ("task.engine.pareto=[time_ms]", ["task.engine.pareto", "two metrics"]),
]


@pytest.mark.parametrize(("override", "words"), BAD_VALUES[:6] + BAD_TASK,
                         ids=[b[0] for b in BAD_VALUES[:6] + BAD_TASK])
def test_run_evo_exits_2_and_writes_nothing(override, words, tmp_path, capsys):
    code = run_evo.main([override, f"results_root={tmp_path}", "run_name=r"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    for word in words:
        assert word in err, (word, err)
    assert not any(tmp_path.iterdir())


def test_a_config_without_the_engine_section_says_what_to_add():
    data = compose(ROOT / "configs", "eplb_example")
    data["task"].pop("engine")
    with pytest.raises(ConfigError, match="no engine: section.*copy the engine: section"):
        run_config_from_dict(data)


def test_strategy_options_that_fit_are_kept():
    config = build("evolution.parent_selection=tournament", "evolution.selection_options={size: 2}")
    assert config.evolution.selection_options == {"size": 2}
    with pytest.raises(ConfigError, match="tournament size must be >= 1"):
        build("evolution.parent_selection=tournament", "evolution.selection_options={size: 0}")


def test_overrides_address_list_items():
    data = {"llm": {"models": [{"name": "a", "temperatures": [0.1]}]}}
    changed = apply_overrides(data, ["llm.models[0].temperatures=[0.5, 0.9]"])
    assert changed["llm"]["models"][0]["temperatures"] == [0.5, 0.9]
    assert data["llm"]["models"][0]["temperatures"] == [0.1]  # the input is left alone
    with pytest.raises(ConfigError, match=r"no item \[3\] there \(1 items\)"):
        apply_overrides(data, ["llm.models[3].name=b"])
