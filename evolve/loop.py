"""The evolution pipeline: propose while evaluating, record everything, stop on budgets.

Generation g (1..N) is one proposal on island (g-1) % islands. It may start
once every generation <= g - max_in_flight has finished, and it sees only
those (see `evolve.population`), so runs are reproducible and a resumed run
makes the same choices. Its LLM call is stored as soon as it returns, its
program row when its evaluation ends; on resume, finished generations are
skipped and stored replies are reused, so no call is paid for twice.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from evolve import patches, selection
from evolve.bandit import make_model_selector
from evolve.config import ModelConfig, RunConfig
from evolve.database import Database
from evolve.evaluation import make_pool
from evolve.llm import LLMClient, estimate_tokens, max_call_cost
from evolve.offline import offline_mutation
from evolve.population import Population
from evolve.prompts import PromptTooLong
from evolve.proposer import OFFLINE_MODEL, Proposal, Proposer, generation_rng
from evolve.records import LLMCall, Program
from evolve.reports import write_reports
from evolve.scratch import SCRATCH_PREFIXES, sweep_scratch
from evolve.task import load_task

log = logging.getLogger("evolve")


@dataclass
class _Flight:
    """A generation under way."""

    proposal: Proposal
    max_cost: float = 0.0
    code: str | None = None


class Evolution:
    """One run in `run_dir`; `run()` continues from whatever the database holds."""

    def __init__(self, config: RunConfig, run_dir: Path, project_root: Path,
                 models: list[ModelConfig], results_root: Path | None = None,
                 client_factory=None):
        self.config = config
        self.evo = config.evolution
        self.run_dir = run_dir
        self.project_root = project_root
        self.results_root = results_root
        self.db = Database(run_dir / "evolution.db")
        self.population = Population(self.evo.num_islands, self.db.programs())
        self.models = {m.name: m for m in models}
        self.spec = config.task.engine
        task = load_task(self.spec.entry, config.task.options)
        self.proposer = Proposer(config, models, project_root / config.prompts_dir,
                                 task.describe(self.spec.description))
        factory = client_factory or (lambda m: LLMClient(m, config.llm.retry))
        self.clients = {m.name: factory(m) for m in models}
        self.bandit = make_model_selector(
            config.llm.selector, models, **({"exploration": config.llm.exploration,
                                             "cost_aware": config.llm.cost_aware}
                                            if config.llm.selector == "ucb" else {})) \
            if models else None
        self.bandit_upto = 0
        self.completed = self.db.completed_generations()
        self.finished_upto = 0
        self.cost = self.db.total_cost()
        self.flights: dict[int, _Flight] = {}
        self.futures: dict[Future, tuple[str, int]] = {}
        self.stop_reason: str | None = None
        (run_dir / "programs").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ entry point
    def run(self) -> str:
        """Run until all generations are done or a budget stops it; returns why it ended."""
        self.pool = make_pool(self.config.evaluation, self.spec.entry, self.config.task.options)
        self.llm_threads = ThreadPoolExecutor(max_workers=self.evo.max_in_flight)
        self.started = time.monotonic()
        self.elapsed_before = float(self.db.get_meta("elapsed_s", 0.0))
        self.db.set_meta("run_state", {"state": "running"})  # the run page reloads itself
        completed = False
        try:
            self._seed()
            todo = [g for g in range(1, self.evo.generations + 1) if g not in self.completed]
            with tqdm(total=self.evo.generations, initial=self.evo.generations - len(todo),
                      desc="generations", unit="gen", dynamic_ncols=True) as bar:
                self.bar = bar
                self._update_bar()
                self._pipeline(todo)
            completed = True
        finally:  # on Ctrl-C or a crash, in-flight evaluations are killed, not awaited
            self.llm_threads.shutdown(wait=False, cancel_futures=True)
            self.pool.shutdown(kill=not completed)
            for prefix in SCRATCH_PREFIXES:  # what killed workers could not remove
                sweep_scratch(prefix)
            self._save_elapsed()
            self.db.set_meta("run_state", {"state": "ended", "stop_reason": self.stop_reason
                                           or ("finished" if completed else "interrupted")})
            self._report()
            self.db.close()
        return self.stop_reason or "finished"

    # ------------------------------------------------------------------ seeding
    def _seed(self) -> None:
        if not self.population.visible(None, 0, valid_only=False):
            self._seed_initial()
        self._add_references()

    def _add_references(self) -> None:
        """Evaluate the task's `references` once each; ranked, never parents (see Population)."""
        todo = {}
        for relative in self.spec.references:
            ref_id = f"ref-{Path(relative).stem}"
            source = self.project_root / relative
            if ref_id in self.population.by_id:
                continue  # evaluated before a restart
            if ref_id in todo or not source.is_file():
                log.warning("reference %s skipped: %s", source,
                            "its name is taken" if ref_id in todo else "not found")
                continue
            code = source.read_text()
            path = self.run_dir / "programs" / f"{ref_id}.py"
            path.write_text(code)
            todo[ref_id] = (code, self.pool.submit(str(path)))
        for ref_id, (code, future) in todo.items():
            result = future.result()
            program = self._program_from_result(ref_id, code, 0, 0, result,
                                                patch_type="reference")
            self.db.add_program(program)
            self.population.add(program)
            if result["correct"]:
                log.info("reference %s: score %.4f", ref_id, program.score)
            else:
                log.warning("reference %s fails its evaluation: %s", ref_id,
                            str(result["error"])[:300])

    def _seed_initial(self) -> None:
        code = (self.project_root / self.spec.initial_program).read_text()
        path = self._write_program(0, code)
        result = self.pool.submit(str(path)).result()
        seed = self._program_from_result("seed", code, 0, 0, result, patch_type="initial")
        if not seed.valid:
            raise RuntimeError(f"the initial program fails its evaluation: {seed.error}")
        copies = [replace(seed, id=f"seed-{island}", island=island, patch_type="migrant",
                          parent_id=seed.id) for island in range(1, self.evo.num_islands)]
        self.db.add_programs([seed, *copies])  # one program, present on every island
        for program in [seed, *copies]:
            self.population.add(program)
        log.info("seeded %d islands; initial score %.4f", self.evo.num_islands, seed.score)

    # ------------------------------------------------------------------ the pipeline
    def _pipeline(self, todo: list[int]) -> None:
        queue = list(todo)
        while queue or self.futures:
            self._check_wall()
            while queue and self._may_start(queue[0]) and self.stop_reason is None:
                self._start(queue.pop(0))
            if self.stop_reason is not None:
                queue.clear()
            if not self.futures:
                if queue and not self._may_start(queue[0]):
                    raise RuntimeError(f"generation {queue[0]} cannot start: a lower one is "
                                       "neither finished nor under way")
                continue
            done, _ = wait(list(self.futures), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                stage, generation = self.futures.pop(future)
                if stage == "llm":
                    self._on_reply(generation, future.result())
                else:
                    self._on_evaluated(generation, future.result())
            self._watchdog()
            self._check_wall()

    def _may_start(self, generation: int) -> bool:
        """Room in flight, and every generation up to g - max_in_flight finished."""
        while self.finished_upto + 1 in self.completed:
            self.finished_upto += 1
        cutoff = generation - self.evo.max_in_flight
        return len(self.flights) < self.evo.max_in_flight and self.finished_upto >= cutoff

    def _start(self, generation: int) -> None:
        cutoff = max(0, generation - self.evo.max_in_flight)
        self._migrate(generation, cutoff)
        self._advance_bandit(cutoff)
        try:
            proposal = self.proposer.plan(generation, self.population, cutoff,
                                          self.bandit.choose if self.bandit else None)
        except PromptTooLong as exc:
            self._record_failure(generation, None, f"prompt too long: {exc}", "prompt_too_long")
            return
        flight = _Flight(proposal)
        self.flights[generation] = flight
        if proposal.model == OFFLINE_MODEL:
            self._on_offline(generation)
            return
        stored = [c for c in self.db.llm_calls(generation) if c.reply is not None]
        if stored:  # answered before a restart: reuse, do not pay again
            self._on_reply(generation, stored[-1], record=False)
            return
        model = self.models[proposal.model]
        max_cost = max_call_cost(model, estimate_tokens(proposal.prompt.system
                                                        + proposal.prompt.user))
        if self._over_cost(max_cost):
            del self.flights[generation]
            self.stop_reason = (f"API cost cap of ${self.config.budget.max_cost_usd:.2f} "
                                f"reached (spent ${self.cost:.4f})")
            tqdm.write(f"stopping: {self.stop_reason}")
            return
        flight.max_cost = max_cost
        client = self.clients[proposal.model]
        future = self.llm_threads.submit(client.complete, proposal.prompt.system,
                                         proposal.prompt.user, proposal.temperature, generation)
        self.futures[future] = ("llm", generation)

    def _on_offline(self, generation: int) -> None:
        proposal = self.flights[generation].proposal
        rng = generation_rng(self.evo.seed + 1, generation)
        other = proposal.other.code if proposal.other else None
        try:
            code, description = offline_mutation(proposal.parent.code, other, rng)
        except patches.PatchError as exc:
            self._record_failure(generation, None, f"offline operator: {exc}", "operator_failed")
            return
        log.info("generation %d: %s", generation, description)
        self._evaluate(generation, code)

    def _on_reply(self, generation: int, call: LLMCall, record: bool = True) -> None:
        flight = self.flights[generation]
        flight.max_cost = 0.0  # its real cost is in self.cost now
        if record:
            self.db.add_llm_call(call)
            self.cost += call.cost
        if call.reply is None:
            self._record_failure(generation, None, f"LLM call failed: {call.error}", "llm_error")
            return
        proposal = flight.proposal
        try:
            code = patches.apply_reply(proposal.patch_type, proposal.parent.code, call.reply)
        except patches.PatchError as exc:
            self._record_failure(generation, None, f"unusable reply: {exc}", "no_patch")
            return
        self._evaluate(generation, code)

    def _evaluate(self, generation: int, code: str) -> None:
        digest = patches.code_hash(code)
        twin = self.population.twin(digest, max(0, generation - self.evo.max_in_flight))
        if twin is not None:
            self._record_failure(generation, code,
                                 f"duplicate of program {twin.id}: identical code is not "
                                 "evaluated again; make a real change", "duplicate",
                                 duplicate_of=twin.id)
            return
        self.flights[generation].code = code
        self._submit_evaluation(generation)

    def _submit_evaluation(self, generation: int) -> None:
        path = self._write_program(generation, self.flights[generation].code)
        future = self.pool.submit(str(path))
        self.futures[future] = ("eval", generation)

    def _on_evaluated(self, generation: int, result: dict) -> None:
        flight = self.flights.pop(generation)
        p = flight.proposal
        program = self._program_from_result(
            f"g{generation:06d}", flight.code, generation, p.island, result,
            parent=p.parent, other=p.other if p.patch_type in ("cross", "offline") else None,
            patch_type=p.patch_type, model=p.model)
        self._finish(program)

    def _record_failure(self, generation: int, code: str | None, error: str, outcome: str,
                        duplicate_of: str | None = None) -> None:
        """Store a proposal that was not scored; `outcome` says why (records.OUTCOMES)."""
        flight = self.flights.pop(generation, None)
        p = flight.proposal if flight else None
        program = Program(
            id=f"g{generation:06d}", code=code or "", generation=generation,
            island=p.island if p else (generation - 1) % self.evo.num_islands,
            parent_id=p.parent.id if p else None,
            other_parent_id=p.other.id if p and p.other and p.patch_type in ("cross", "offline")
            else None, patch_type=p.patch_type if p else "none",
            model=p.model if p else None, valid=False, error=error,
            code_hash=patches.code_hash(code) if code else "", created_at=time.time(),
            outcome=outcome, duplicate_of=duplicate_of)
        log.info("generation %d failed: %s", generation, error.splitlines()[0][:200])
        self._finish(program)

    def _finish(self, program: Program) -> None:
        self.db.add_program(program)
        self.population.add(program)
        self.completed.add(program.generation)
        self._save_elapsed()
        self.bar.update(1)
        self._update_bar()
        if len(self.completed) % max(1, self.config.report_every) == 0:
            self._report()

    def _program_from_result(self, program_id: str, code: str, generation: int, island: int,
                             result: dict, parent: Program | None = None,
                             other: Program | None = None, patch_type: str = "initial",
                             model: str | None = None) -> Program:
        metrics = dict(result.get("metrics") or {})
        valid, error = bool(result["correct"]), result.get("error")
        score = metrics.get(self.spec.fitness) if valid else None
        if valid and (isinstance(score, bool) or not isinstance(score, int | float)):
            valid, score = False, None
            error = (f"the task reported no number for its fitness metric "
                     f"{self.spec.fitness!r} (task engine.fitness); it reported: "
                     f"{', '.join(sorted(metrics)) or 'no metrics'}")
        return Program(
            id=program_id, code=code, generation=generation, island=island,
            parent_id=parent.id if parent else None, other_parent_id=other.id if other else None,
            patch_type=patch_type, model=model, valid=valid, score=score,
            metrics=metrics, error=error, feedback=result.get("feedback", ""),
            code_hash=patches.code_hash(code), eval_seconds=result.get("wall_seconds", 0.0),
            created_at=time.time(), outcome="valid" if valid else "invalid")

    # ------------------------------------------------------------------ islands
    def _migrate(self, generation: int, cutoff: int) -> None:
        interval = self.evo.migration_interval
        if interval <= 0 or generation % interval or self.evo.num_islands < 2:
            return
        if any(p.generation == generation and p.patch_type == "migrant"
               for p in self.population.visible(None, generation, valid_only=False)):
            return  # done before a restart
        bests = {i: self.population.best(i, cutoff) for i in range(self.evo.num_islands)}

        def holds(island: int, code_hash: str) -> bool:
            return self.population.holds(island, code_hash, cutoff, generation)

        plan = selection.migration_plan(bests, self.evo.num_islands, holds)
        if self.evo.stagnation_patience > 0:
            history = self._island_history(cutoff)
            stuck = selection.stagnant_islands(history, self.evo.stagnation_patience)
            survivors = [b for b in bests.values() if b is not None]
            plan += [(p, i) for p, i in selection.reset_plan(stuck, survivors)
                     if not holds(i, p.code_hash)]
        copies = [replace(program, id=f"m{generation:06d}-{index}", island=target,
                          generation=generation, patch_type="migrant", parent_id=program.id,
                          other_parent_id=None, created_at=time.time())
                  for index, (program, target) in enumerate(plan)]
        self.db.add_programs(copies)  # the whole migration or, after a crash, none of it
        for copy in copies:
            self.population.add(copy)
            log.info("generation %d: program %s migrates to island %d", generation,
                     copy.parent_id, copy.island)

    def _island_history(self, cutoff: int) -> dict[int, list[float]]:
        """Best score per island at each past migration point."""
        interval = self.evo.migration_interval
        points = range(interval, cutoff + 1, interval)
        history = {}
        for island in range(self.evo.num_islands):
            programs = self.population.visible(island, cutoff)
            history[island] = [max((p.score for p in programs if p.generation <= point),
                                   default=0.0) for point in points]
        return history

    # ------------------------------------------------------------------ bookkeeping
    def _advance_bandit(self, cutoff: int) -> None:
        """Feed the bandit the rewards of generations up to `cutoff`, in order."""
        if self.bandit is None:
            return
        for generation in range(self.bandit_upto + 1, cutoff + 1):
            program = self.population.by_id.get(f"g{generation:06d}")
            if program is None or program.model not in self.models:
                continue
            parent_score = self._score_of(program.parent_id)
            reward = max(0.0, (program.score or 0.0) - parent_score) if program.valid else 0.0
            cost = sum(c.cost for c in self.db.llm_calls(generation))
            self.bandit.update(program.model, reward, cost)
        self.bandit_upto = max(self.bandit_upto, cutoff)

    def _score_of(self, program_id: str | None) -> float:
        program = self.population.by_id.get(program_id)
        return (program.score or 0.0) if program else 0.0

    def _over_cost(self, next_cost: float) -> bool:
        cap = self.config.budget.max_cost_usd
        in_flight = sum(f.max_cost for f in self.flights.values())
        return cap is not None and self.cost + in_flight + next_cost > cap

    def _check_wall(self) -> None:
        cap = self.config.budget.max_wall_s
        if cap is not None and self.stop_reason is None and self._elapsed() > cap:
            self.stop_reason = f"wall-time cap of {cap:g} s reached"
            tqdm.write(f"stopping: {self.stop_reason} (finishing work under way)")

    def _watchdog(self) -> None:
        overdue = self.pool.overdue()
        if not overdue:
            return
        victims = {self.futures.pop(f)[1] for f in overdue if f in self.futures}
        survivors = {f: key for f, key in self.futures.items() if key[0] == "eval"}
        self.pool.restart()
        for generation in victims:
            self._record_failure(generation, self.flights[generation].code,
                                 f"evaluation exceeded the watchdog "
                                 f"({self.config.evaluation.watchdog_s:g} s) and was killed",
                                 "timeout")
        for future, (_, generation) in survivors.items():  # killed too: evaluate again
            self.futures.pop(future, None)
            self._submit_evaluation(generation)

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def _save_elapsed(self) -> None:
        self.db.set_meta("elapsed_s", self._elapsed())

    def _write_program(self, generation: int, code: str) -> Path:
        path = self.run_dir / "programs" / f"g{generation:06d}.py"
        path.write_text(code)
        return path

    def _update_bar(self) -> None:
        valid = [p for g in self.population.by_island.values() for p in g
                 if p.generation > 0 and p.patch_type != "migrant"]
        best = self.population.best(None, 10**9)
        rate = sum(p.valid for p in valid) / len(valid) if valid else 0.0
        self.bar.set_postfix(best=f"{best.score:.4f}" if best else "-", valid=f"{rate:.0%}",
                             cost=f"${self.cost:.3f}", refresh=False)

    def _report(self) -> None:
        try:
            write_reports(self.db, self.run_dir, self.results_root, self.run_dir.name,
                          columns=self.spec.report_columns, pareto=self.spec.pareto)
        except Exception as exc:  # a report failure must never stop or corrupt the run
            log.warning("writing reports failed: %s", exc)
