"""A second task, a few lines long, run end to end by the unchanged engine: the contract of
evolve/task.py is all a task needs. (The engine holds no name of the EPLB task.)

The toy task asks for `f(x)` with f(3) as close as possible to the option `target`. Its
programs are trusted test code, so it runs them in the evaluation worker, unsandboxed; a
task evaluating untrusted code runs it in `evolve.sandbox`, as eplb/evaluator.py does.
"""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import pandas as pd
import yaml
from evo_helpers import KEY_ENV, model_override, user_text
from llm_server import llm_server  # noqa: F401

from evolve.config import compose, run_config_from_dict
from evolve.loop import Evolution


class ToyTask:
    """Maximise closeness = -|f(3) - target|."""

    def __init__(self, options: dict):
        self.target = options["target"]

    def check(self) -> list[str]:
        if not isinstance(self.target, int | float):
            raise ValueError(f"task.target={self.target!r} is not allowed: a number")
        return []

    def prepare(self) -> None:
        return None

    def evaluate(self, program_path: str, results_dir=None, prepared=None) -> dict:
        try:
            value = runpy.run_path(program_path)["f"](3)
        except Exception as exc:
            return {"correct": False, "error": f"{type(exc).__name__}: {exc}", "metrics": {},
                    "feedback": ""}
        return {"correct": True, "error": None, "feedback": f"f(3) = {value}",
                "metrics": {"closeness": -abs(value - self.target), "value": value,
                            "detail": {"nested": "left out by the engine"}}}

    def describe(self, template: str) -> str:
        return template.format(target=self.target)


TOY_TASK = {
    "target": 10,
    "engine": {
        "entry": "test_second_task:ToyTask",
        "initial_program": "toy.py",
        "fitness": "closeness",
        "description": "Write f(x) so that f(3) is as close as possible to {target}.",
        "prompt_metrics": ["value"],
        "report_columns": ["value"],
    },
}
BLOCK = "def f(x):\n    return x + {n}\n"
SEED = f"# EVOLVE-BLOCK-START\n{BLOCK.format(n=0)}# EVOLVE-BLOCK-END\n"


def test_a_toy_task_runs_through_the_same_engine(tmp_path, llm_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv(KEY_ENV, "sk-test")
    configs = tmp_path / "configs"
    (configs / "task").mkdir(parents=True)
    (configs / "variant").mkdir()
    (configs / "task" / "toy.yaml").write_text(yaml.safe_dump(TOY_TASK))
    (configs / "variant" / "toy.yaml").write_text(yaml.safe_dump({"task": "toy"}))
    (tmp_path / "toy.py").write_text(SEED)
    served = []

    def respond(request):
        served.append(request)
        return f"Closer.\n\n```python\n{BLOCK.format(n=len(served))}```\n"

    llm_server.responder = respond
    config = run_config_from_dict(compose(configs, "toy", [
        "task.target=6", f"results_root={tmp_path}", "run_name=toy",
        f"prompts_dir={Path(__file__).resolve().parents[1] / 'configs' / 'prompts'}",
        "evolution.generations=4", "evolution.num_islands=1", "evolution.max_in_flight=1",
        "evolution.patch_types={full: 1.0}", "evaluation.n_jobs=1", model_override(llm_server)]))
    run_dir = tmp_path / "toy"
    evolution = Evolution(config, run_dir, tmp_path, list(config.llm.models))
    assert evolution.run() == "finished"

    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert list(board.columns[:4]) == ["rank", "id", "score", "value"]
    assert board.loc[0, "value"] == 6 and board.loc[0, "score"] == 0  # x + 3 hits the target
    assert not (run_dir / "pareto.csv").exists()  # the task names no Pareto axes
    best = json.loads((run_dir / "best" / "metrics.json").read_text())
    assert best["metrics"] == {"closeness": 0, "value": 6}  # flat: the nested detail left out
    first = served[0]["messages"]
    assert "as close as possible to 6." in first[0]["content"]  # the override, not the 10
    assert re.search(r"closeness=-3 value=3\b", user_text(served[0]))  # the seed: f(3) = 3


def test_the_engine_names_nothing_of_the_eplb_task():
    engine = Path(__file__).resolve().parents[1] / "evolve"
    names = re.compile(r"eplb|balancedness|combined_score|scenario|rebalance", re.IGNORECASE)
    found = [f"{path.name}:{number}" for path in sorted(engine.rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if names.search(line)]
    assert found == []
