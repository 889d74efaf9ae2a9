"""A round as a table of typed steps.

Each :class:`RoundStep` names a step, the round state the store records when it is done
(``tasks.store.ROUND_STATES``, in the same order), its share of the round's progress bar and the callable that
runs it. A step gets the round's runtime data (:class:`RoundRun`, what atomate2's ``make()`` gets) and returns a
:class:`StepReport` (when its task bodies ran, and for how long), from which the round records its timings.
Adding a step is one row in :data:`ROUND_STEPS` plus its state in ``ROUND_STATES`` (the store's order of round
states); ``tests/test_round_steps.py`` checks that the two agree.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prefect import get_run_logger
from prefect.cache_policies import NO_CACHE

from conf.schema import CampaignConfig
from flows.dft import dft_stage
from tasks.acquire import acquire_task
from tasks.context import relax_context
from tasks.feedback import feedback_task
from tasks.generate import generate_task
from tasks.learn import learn_task
from tasks.relax import relax_chunk_task
from tasks.results import RelaxChunkRecord, TaskRecord
from tasks.stability import evaluate_task
from tasks.store import Store
from tasks.validity import filter_task


@dataclass(frozen=True)
class StepReport:
    """When a step's task bodies ran (epoch-second intervals) and their summed compute time in seconds."""

    intervals: tuple[tuple[float, float], ...] = ()
    compute_s: float = 0.0

    @classmethod
    def of(cls, *runs: TaskRecord) -> StepReport:
        """From the runs of the step's task bodies."""
        return cls(tuple((r.start, r.end) for r in runs), float(sum(r.compute_s for r in runs)))

    def __add__(self, other: StepReport) -> StepReport:
        return StepReport(self.intervals + other.intervals, self.compute_s + other.compute_s)

    def timing(self, wall_s: float) -> dict[str, Any]:
        """The round summary's record of the step."""
        return {"wall_s": wall_s, "intervals": [list(i) for i in self.intervals], "compute_s": self.compute_s}


@dataclass(frozen=True)
class RoundRun:
    """The runtime data of one round: what every step is called with."""

    store: Store
    campaign_id: str
    round_index: int
    cfg: CampaignConfig
    campaign_dir: str
    on_progress: Callable[[float], None] = field(default=lambda fraction: None)  # of the running step, 0-1


class Step(Protocol):
    def __call__(self, run: RoundRun) -> StepReport: ...


def _cache_key(context: Any, parameters: dict[str, Any]) -> str:
    payload = json.dumps(parameters, sort_keys=True, default=str)
    return f"matloop-{context.task.name}-{hashlib.sha256(payload.encode()).hexdigest()[:24]}"


def persisted(step, campaign_dir: str, retries: int = 0, cached: bool = True):
    """``step`` with results persisted under the campaign directory.

    ``cached`` steps are keyed by their inputs (campaign, round, structure hashes), so a retried or resumed
    flow run reuses them. Steps whose output depends on the store's current state (evaluate, feedback) are
    persisted but always run.
    """
    storage = Path(campaign_dir) / "prefect-results"  # Prefect resolves a Path to a local file system
    caching = {"cache_key_fn": _cache_key} if cached else {"cache_policy": NO_CACHE}
    return step.with_options(persist_result=True, result_storage=storage, retries=retries, retry_delay_seconds=2,
                             **caching)


@dataclass(frozen=True)
class TaskStep:
    """A step that is one store-backed task ``task(store_url, campaign_id, round_index)``."""

    task: Any
    cached: bool

    def __call__(self, run: RoundRun) -> StepReport:
        res = persisted(self.task, run.campaign_dir, cached=self.cached)(run.store.url, run.campaign_id,
                                                                         run.round_index)
        return StepReport.of(res)


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def missing_references(store: Store, campaign_id: str) -> list[str]:
    """Hashes of the campaign's known phases without a relaxation by its MLIP and settings yet."""
    _, spec, shash = relax_context(store, campaign_id)
    done_refs = store.reference_energies(spec.identity, shash)
    return sorted(h for h in store.known_phase_seeds(campaign_id) if h not in done_refs)


def acquire_step(run: RoundRun) -> StepReport:
    """Relax the missing known phases first (the surrogate learns from them), then rank and choose."""
    cfg = run.cfg
    refs = missing_references(run.store, run.campaign_id) if cfg.acquisition.function != "all" else []
    relax = persisted(relax_chunk_task, run.campaign_dir, retries=cfg.relax.retries)
    futures = [relax.submit(run.store.url, run.campaign_id, "reference", chunk)
               for chunk in chunks(refs, cfg.relax.chunk_size)]
    done = StepReport.of(*(f.result() for f in futures))
    res = persisted(acquire_task, run.campaign_dir, cached=False)(run.store.url, run.campaign_id, run.round_index,
                                                                    references_relaxed=len(refs))
    return done + StepReport.of(res)


def relax_step(run: RoundRun) -> StepReport:
    """Submit relaxation chunks (missing reference phases first, then the candidates the acquisition chose, in
    order of choice, or every accepted candidate) and wait."""
    store, cid, r, cfg = run.store, run.campaign_id, run.round_index, run.cfg
    refs = missing_references(store, cid)
    chosen = store.chosen(cid, r)
    cands = chosen if chosen is not None else [c.hash for c in store.accepted(cid, r)]
    over_budget = 0
    if cfg.budget.relaxations is not None:  # the round that reaches the budget relaxes only what fits
        left = max(cfg.budget.relaxations - store.relaxation_count(cid, before_round=r), 0)
        cands, over_budget = cands[:left], max(len(cands) - left, 0)
    relax = persisted(relax_chunk_task, run.campaign_dir, retries=cfg.relax.retries)
    size = cfg.relax.chunk_size
    futures = [relax.submit(store.url, cid, "reference", chunk) for chunk in chunks(refs, size)]
    futures += [relax.submit(store.url, cid, "candidate", chunk) for chunk in chunks(cands, size)]
    results: list[RelaxChunkRecord] = []
    for f in futures:  # in submission order; progress moves as chunks finish
        results.append(f.result())
        run.on_progress(len(results) / len(futures))
    converged = sum(res.converged for res in results if res.kind == "candidate")
    summary = {"relaxed": len(cands), "relax_converged": converged, "references_relaxed": len(refs),
               "relaxations_reused": sum(res.reused for res in results), "over_budget": over_budget}
    store.advance_round(cid, r, "relaxed", summary)
    return StepReport.of(*results)


def dft_step(run: RoundRun) -> StepReport:
    """The DFT subflow, or a recorded skip when ``dft.backend`` is ``none``."""
    t0 = time.time()
    if run.cfg.dft.backend == "none":
        get_run_logger().info("round %d: DFT step skipped (dft.backend: none)", run.round_index)
        run.store.advance_round(run.campaign_id, run.round_index, "dft", {"dft": "skipped (dft.backend: none)"})
        return StepReport()
    dft_stage(run.store.url, run.campaign_id, run.round_index)
    return StepReport(((t0, time.time()),), time.time() - t0)


@dataclass(frozen=True)
class RoundStep:
    """One row of the round: its name, the round state recorded when it is done, its share of the round's
    progress (percent) and what runs it."""

    name: str
    state: str
    share: float
    run: Step


ROUND_STEPS: tuple[RoundStep, ...] = (
    RoundStep("generate", "generated", 10.0, TaskStep(generate_task, cached=True)),
    RoundStep("filter", "filtered", 4.0, TaskStep(filter_task, cached=True)),
    RoundStep("acquire", "acquired", 2.0, acquire_step),
    RoundStep("relax", "relaxed", 54.0, relax_step),
    RoundStep("evaluate", "evaluated", 5.0, TaskStep(evaluate_task, cached=False)),
    RoundStep("dft", "dft", 17.0, dft_step),
    RoundStep("learn", "learned", 3.0, TaskStep(learn_task, cached=False)),
    RoundStep("feedback", "completed", 5.0, TaskStep(feedback_task, cached=False)),
)
"""The steps of a round, in order (generate -> filter -> acquire -> relax -> evaluate -> dft -> learn -> feedback)."""

STEP_OF_STATE = {s.state: s.name for s in ROUND_STEPS}
"""The step that runs while a round waits to reach a state."""
