"""Run (or resume) an island-based LLM evolution of EPLB candidates.

    python run_evo.py [--variant eplb_example] [section.key=value ...]
    python run_evo.py --resume results/RUN [section.key=value ...]

Results land in results/RUN/: index.html (the run page, to open in a browser),
evolution.db, leaderboard.csv, generations.csv, llm.csv, pareto.csv, best/, plot.png,
run.log, config.yaml. With no LLM endpoint
or key configured the run uses the built-in offline mutation operator.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

import yaml

from evolve.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    compose,
    load_yaml,
    run_config_from_dict,
)
from evolve.llm import is_configured
from evolve.loop import Evolution
from evolve.sandbox import SandboxError
from evolve.task import load_task

PROJECT_ROOT = Path(__file__).resolve().parent
OFFLINE_NOTICE = (
    "No LLM endpoint is configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local "
    "OpenAI-compatible server such as vLLM, SGLang or Ollama), or llm.models[].base_url and "
    "api_key_env in the variant.\nUsing the built-in OFFLINE mutation operator (small generic "
    "edits: constants, comparisons, min/max, operand and statement swaps, function "
    "crossover): it exercises the pipeline, it is not expected to find better programs.")


def load_run_config(args: argparse.Namespace) -> tuple[dict, Path]:
    """The composed config mapping and the run folder (new or resumed)."""
    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume {run_dir}: no config.yaml there (is it a run folder?)")
        return apply_overrides(load_yaml(saved), args.overrides), run_dir
    data = compose(PROJECT_ROOT / "configs", args.variant, args.overrides)
    root = Path(data.get("results_root", "results"))
    name = data.get("run_name") or f"{Path(args.variant).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = root / name
    if (run_dir / "evolution.db").exists():
        raise ConfigError(f"{run_dir} already holds a run: use --resume {run_dir}")
    return data, run_dir


def check_task(config: RunConfig) -> list[str]:
    """Build the task from its options, check them, the machine, the initial program and
    the description's placeholders; the task's warnings (nothing is written yet)."""
    spec = config.task.engine
    task = load_task(spec.entry, config.task.options)
    warnings = task.check()
    task.describe(spec.description)
    initial = PROJECT_ROOT / spec.initial_program
    if not initial.is_file():
        raise ConfigError(f"task engine.initial_program={spec.initial_program!r}: no such "
                          f"file ({initial})")
    return warnings


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="eplb_example",
                        help="configs/variant/NAME.yaml or a path (default eplb_example)")
    parser.add_argument("--resume", metavar="RESULTS_DIR", help="continue a run in this folder")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = parser.parse_args(argv)
    try:
        data, run_dir = load_run_config(args)
        config = run_config_from_dict(data)
        warnings = check_task(config)
    except (ConfigError, ValueError, KeyError, ImportError, SandboxError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    for warning in warnings:
        print(warning, file=sys.stderr)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    logging.basicConfig(filename=run_dir / "run.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    models = [m for m in config.llm.models if is_configured(m)]
    if not models:
        if not config.llm.offline_fallback:
            print("error: " + OFFLINE_NOTICE.splitlines()[0], file=sys.stderr)
            return 2
        print(OFFLINE_NOTICE, file=sys.stderr)
        logging.warning("offline mode: no LLM endpoint configured")
    print(f"run folder: {run_dir}", file=sys.stderr)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `kill` stops as cleanly as Ctrl-C
    evolution = Evolution(config, run_dir, PROJECT_ROOT, models,
                          results_root=Path(config.results_root))
    try:
        reason = evolution.run()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python run_evo.py --resume {run_dir}",
              file=sys.stderr)
        return 130
    print(f"{reason}; results in {run_dir}: open {run_dir / 'index.html'} in a browser "
          "(also leaderboard.csv, best/program.py, plot.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
