"""The evolution pipeline: propose while evaluating, record everything, stop on budgets.

Generation g (1..N) is one proposal on island (g-1) % islands. It may start
once every generation <= g - max_in_flight has finished, and it sees only
those (see `evolve.population`), so runs are reproducible and a resumed run
makes the same choices. Its LLM call is stored as soon as it returns, its
program row when its evaluation ends; on resume, finished generations are
skipped and stored replies are reused, so no call is paid for twice.

A program is evaluated once per structure (`evolve.fingerprint`): a proposal whose
code repeats a program evaluated before, or one under way, shares that evaluation,
and the lowest generation among those proposing it owns the result. So that this
does not depend on which reply comes first, a generation's row is written only once
every lower generation's code is known (its evaluation is not delayed).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from evolve import patches, selection
from evolve.bandit import UCBBandit, make_model_selector
from evolve.config import ModelConfig, RunConfig
from evolve.database import Database
from evolve.evaluation import make_pool
from evolve.fingerprint import fingerprints
from evolve.ideas import parse_idea
from evolve.llm import LLMClient, estimate_tokens, max_call_cost
from evolve.memory import ledger_text
from evolve.offline import offline_mutation
from evolve.population import Population
from evolve.prompts import PromptTooLong, build_summary_prompt
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
    code: str | None = None  # known once its reply is patched
    idea: str = ""
    structure: str = ""  # the structure hash of its code, when it shares an evaluation
    capped: tuple[str, int] | None = None  # (first, count) of its island's numeric variants
    row: Program | None = None  # its finished row, written once lower generations' code is known


@dataclass
class _Evaluation:
    """One evaluation of a program structure, shared by every generation proposing it."""

    path: str
    members: set[int]
    result: dict | None = None


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
        kinds = sorted(k for k, v in self.evo.patch_types.items() if float(v) > 0)
        self.patch_bandit = UCBBandit(kinds, config.llm.exploration) \
            if self.evo.adaptive_patch_types and models else None
        self.bandit_upto = 0
        self.completed = self.db.completed_generations()
        self.finished_upto = 0
        self.cost = self.db.total_cost()
        self.flights: dict[int, _Flight] = {}
        self.futures: dict[Future, tuple[str, int | str]] = {}  # llm: generation; eval: structure
        self.evaluations: dict[str, _Evaluation] = {}  # by structure hash
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
        while queue or self.futures or self.flights:
            self._check_wall()
            self._settle()
            while queue and self._may_start(queue[0]) and self.stop_reason is None:
                self._start(queue.pop(0))
                self._settle()
            if self.stop_reason is not None:
                queue.clear()
            if not self.futures:
                if self.flights:
                    raise RuntimeError(f"generations {sorted(self.flights)} wait for nothing")
                if queue and not self._may_start(queue[0]):
                    raise RuntimeError(f"generation {queue[0]} cannot start: a lower one is "
                                       "neither finished nor under way")
                continue
            done, _ = wait(list(self.futures), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                stage, key = self.futures.pop(future)
                if stage == "llm":
                    self._on_reply(key, future.result())
                else:
                    self.evaluations[key].result = future.result()
            self._watchdog()
            self._settle()
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
            proposal = self.proposer.plan(
                generation, self.population, cutoff, self.bandit.choose if self.bandit else None,
                self.patch_bandit.choose if self.patch_bandit else None, self._advice(generation))
        except PromptTooLong as exc:
            self._record_failure(generation, None, f"prompt too long: {exc}", "prompt_too_long")
            return
        flight = _Flight(proposal)
        self.flights[generation] = flight
        if proposal.model == OFFLINE_MODEL:
            self._on_offline(generation)
            return
        stored = [c for c in self.db.llm_calls(generation)
                  if c.reply is not None and c.purpose == "mutation"]
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
        self.flights[generation].idea = description
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
        flight.idea = parse_idea(call.reply)
        proposal = flight.proposal
        try:
            code = patches.apply_reply(proposal.patch_type, proposal.parent.code, call.reply)
        except patches.PatchError as exc:
            self._record_failure(generation, None, f"unusable reply: {exc}", "no_patch")
            return
        self._evaluate(generation, code)

    def _evaluate(self, generation: int, code: str) -> None:
        """Evaluate the code, unless its structure was evaluated before or is under way
        (then share that evaluation) or the island holds enough numeric variants of it."""
        flight = self.flights[generation]
        flight.code = code
        structure, shape = fingerprints(code)
        shared = self.evaluations.get(structure)
        if shared is not None:
            shared.members.add(generation)
            flight.structure = structure
            return
        twin = self.population.twin(structure)
        if twin is not None:
            flight.row = self._twin_row(generation, twin)
            return
        island, cutoff = flight.proposal.island, max(0, generation - self.evo.max_in_flight)
        variants = self.population.variants(island, shape, cutoff)
        if len(variants) >= self.evo.literal_variants:
            flight.capped = (variants[0].id, len(variants))  # decided once lower code is known
            return
        flight.structure = structure
        self.evaluations[structure] = _Evaluation(
            str(self._write_program(generation, code)), {generation})
        self._submit_evaluation(structure)

    def _submit_evaluation(self, structure: str) -> None:
        future = self.pool.submit(self.evaluations[structure].path)
        self.futures[future] = ("eval", structure)

    def _settle(self) -> None:
        """Write the rows that are ready, lowest generation first, stopping at the first
        generation whose code is not known yet (a higher one may repeat it)."""
        for generation in sorted(self.flights):
            flight = self.flights[generation]
            if flight.code is None and flight.row is None:
                return
            if flight.row is None and flight.capped:
                flight.row = self._capped_row(generation)
            if flight.row is None and flight.structure:
                flight.row = self._shared_row(generation, self.evaluations[flight.structure])
            if flight.row is not None:
                del self.flights[generation]
                self._finish(flight.row)
                shared = self.evaluations.get(flight.structure)
                if shared is not None and not any(
                        g in self.flights for g in shared.members):
                    del self.evaluations[flight.structure]

    def _capped_row(self, generation: int) -> Program | None:
        """A numeric variant over the island's cap, now that every lower generation's code
        is known: a duplicate if a lower one proposed the same program (then None while it
        waits for that evaluation), else a duplicate of the variants' first, unevaluated."""
        flight = self.flights[generation]
        structure = fingerprints(flight.code)[0]
        if structure in self.evaluations:
            self.evaluations[structure].members.add(generation)
            flight.structure, flight.capped = structure, None
            return None
        twin = self.population.twin(structure)
        if twin is not None:
            return self._twin_row(generation, twin)
        first, count = flight.capped
        return self._failure_row(
            generation, flight.code, f"duplicate of program {first} up to numbers: island "
            f"{flight.proposal.island} has {count} programs that differ from it only in "
            f"numeric literals (at most {self.evo.literal_variants}, evolution."
            "literal_variants); not evaluated: change the structure, not only the numbers",
            "duplicate", duplicate_of=first)

    def _twin_row(self, generation: int, twin: Program) -> Program:
        return self._duplicate_row(generation, twin, twin.metrics, twin.feedback,
                                   twin.score if twin.valid else None)

    def _shared_row(self, generation: int, shared: _Evaluation) -> Program | None:
        """The row of a member of a finished evaluation: its lowest member owns the result,
        every other member is a duplicate of it that reuses it."""
        if shared.result is None:
            return None
        owner = min(shared.members)
        if shared.result.get("timeout"):
            if generation == owner:
                return self._failure_row(generation, self.flights[generation].code,
                                         shared.result["error"], "timeout")
            return self._failure_row(generation, self.flights[generation].code,
                                     f"duplicate of program g{owner:06d}, whose evaluation "
                                     "was killed; not evaluated again", "duplicate",
                                     duplicate_of=f"g{owner:06d}")
        if generation == owner:
            return self._row_from_result(generation, shared.result)
        return self._twin_row(generation, self.population.by_id[f"g{owner:06d}"])  # lower: settled

    def _row_from_result(self, generation: int, result: dict) -> Program:
        flight = self.flights[generation]
        p = flight.proposal
        return self._program_from_result(
            f"g{generation:06d}", flight.code, generation, p.island, result,
            parent=p.parent, other=p.other if p.patch_type in ("cross", "offline") else None,
            patch_type=p.patch_type, model=p.model, idea=flight.idea, direction=p.direction)

    def _duplicate_row(self, generation: int, twin: Program, metrics: dict, feedback: str,
                       score: float | None) -> Program:
        """A proposal repeating `twin`'s program: not evaluated, `twin`'s result reused
        (its metrics and feedback; it is not ranked, the twin is)."""
        code = self.flights[generation].code
        same = "the same code" if patches.code_hash(code) == patches.code_hash(twin.code) \
            else "the same program once comments, docstrings and local names are normalised"
        result = "invalid" if score is None else f"{self.spec.fitness} {score:.4f}"
        row = self._failure_row(
            generation, code, f"duplicate of program {twin.id} ({same}): not evaluated "
            f"again, its result is reused ({result}); make a real change", "duplicate",
            duplicate_of=twin.id)
        return replace(row, metrics=dict(metrics), feedback=feedback)

    def _record_failure(self, generation: int, code: str | None, error: str, outcome: str,
                        duplicate_of: str | None = None) -> None:
        """Store, now, a proposal that was not scored; `outcome` says why (records.OUTCOMES)."""
        program = self._failure_row(generation, code, error, outcome, duplicate_of)
        self.flights.pop(generation, None)
        self._finish(program)

    def _failure_row(self, generation: int, code: str | None, error: str, outcome: str,
                     duplicate_of: str | None = None) -> Program:
        flight = self.flights.get(generation)
        p = flight.proposal if flight else None
        log.info("generation %d failed: %s", generation, error.splitlines()[0][:200])
        return Program(
            id=f"g{generation:06d}", code=code or "", generation=generation,
            island=p.island if p else (generation - 1) % self.evo.num_islands,
            parent_id=p.parent.id if p else None,
            other_parent_id=p.other.id if p and p.other and p.patch_type in ("cross", "offline")
            else None, patch_type=p.patch_type if p else "none",
            model=p.model if p else None, valid=False, error=error,
            code_hash=patches.code_hash(code) if code else "", created_at=time.time(),
            outcome=outcome, duplicate_of=duplicate_of, idea=flight.idea if flight else "",
            direction=p.direction if p else "")

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
                             model: str | None = None, idea: str = "",
                             direction: str = "") -> Program:
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
            created_at=time.time(), outcome="valid" if valid else "invalid", idea=idea,
            direction=direction)

    # ------------------------------------------------------------------ LLM summary
    def _advice(self, generation: int) -> str:
        """The advice of the latest LLM summary for `generation` ("" when off).

        Round k is made when generation k * summary_every starts, from the ledgers of the
        programs visible to that generation, and stored (meta `summary:k`): a resumed
        run reuses it and every later generation shows the same text.
        """
        every = self.evo.summary_every
        if every <= 0 or not self.models or generation < every:
            return ""
        round_ = generation // every
        stored = self.db.get_meta(f"summary:{round_}")
        if stored is None:
            stored = self._summarise(round_ * every)
            if stored is None:
                return ""
            self.db.set_meta(f"summary:{round_}", stored)
        return stored

    def _summarise(self, generation: int) -> str | None:
        """One call condensing the ledgers into advice; None if the cost cap forbids it."""
        cutoff = max(0, generation - self.evo.max_in_flight)
        ledger = ledger_text(self.population.visible(None, cutoff, valid_only=False),
                             self.population.by_id, max(self.evo.memory_ledger, 1) * 2)
        if not ledger:
            return ""
        model = next(iter(self.models.values()))
        prompt = build_summary_prompt(self.project_root / self.config.prompts_dir,
                                      self.proposer.task_description, ledger,
                                      model.context_window - model.max_tokens, estimate_tokens)
        max_cost = max_call_cost(model, estimate_tokens(prompt.system + prompt.user))
        if self._over_cost(max_cost):
            log.warning("LLM summary of generation %d skipped: the cost cap", generation)
            return None
        call = self.clients[model.name].complete(prompt.system, prompt.user,
                                                 model.temperatures[0], generation)
        call = replace(call, purpose="summary")
        self.db.add_llm_call(call)
        self.cost += call.cost
        return (call.reply or "").strip()

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
            cost = sum(c.cost for c in self.db.llm_calls(generation) if c.purpose == "mutation")
            self.bandit.update(program.model, reward, cost)
            if self.patch_bandit and program.patch_type in self.patch_bandit.models:
                self.patch_bandit.update(program.patch_type, reward)
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
        for structure in victims:
            self.evaluations[structure].result = {
                "timeout": True, "error": f"evaluation exceeded the watchdog "
                f"({self.config.evaluation.watchdog_s:g} s) and was killed"}
        for future, (_, structure) in survivors.items():  # killed too: evaluate again
            self.futures.pop(future, None)
            self._submit_evaluation(structure)

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
