"""Evaluating candidates: the worker's entry point (`worker`) and two pools of workers,
local processes (`local`) and a dask.distributed cluster (`dask_pool`).

Both pools have the same interface: `submit(program_path) -> Future` of the worker's
result dict, `overdue()`, `restart()`, `shutdown(kill)`. Each pool imports only the
worker module, and the worker imports only the task contract (`evolve.task`).
"""

from __future__ import annotations

from collections.abc import Mapping

from evolve import secret_env


def make_pool(settings, entry: str, options: Mapping):
    """The pool `settings` (an EvaluationSettings) asks for, evaluating with the task
    `entry` built from `options`. Its workers start without secrets: secret-looking
    variables leave this process's environment first (the LLM clients hold their keys
    already)."""
    secret_env.withdraw()
    if settings.backend == "dask":
        from evolve.evaluation.dask_pool import DaskEvaluationPool  # an optional dependency

        return DaskEvaluationPool(settings, entry, options)
    from evolve.evaluation.local import EvaluationPool

    return EvaluationPool(settings.n_jobs, settings.watchdog_s, entry, options)
