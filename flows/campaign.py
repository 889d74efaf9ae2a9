"""The discovery campaign: one Prefect flow run per campaign, one subflow run per round.

Flows only orchestrate. The store is the source of truth: each round remembers the last step it
completed, so a resumed (or retried) campaign continues where it stopped, and relaxation chunks skip the
structures the store already holds. Task results are also persisted under the campaign directory with
cache keys made of the campaign, round and structure hashes, so Prefect retries reuse finished work.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from conf.schema import CampaignConfig, RelaxConfig
from flows.artifacts import Progress, publish_round
from flows.dft import dft_stage
from flows.runners import SharedProcessPool, make_task_runner
from tasks.acquire import acquire_task
from tasks.evaluate import evaluate_task
from tasks.feedback import feedback_task
from tasks.generate import generate_task
from tasks.learn import learn_task
from tasks.lease import CampaignLease, check_lease
from tasks.mlip import MLIPSpec, resolve_mlip
from tasks.relax import load_mlip_task, relax_chunk_task, relax_context
from tasks.store import Store, round_reached
from tasks.validity import filter_task

STEP_SHARE = {"generate": 10.0, "filter": 4.0, "acquire": 2.0, "relax": 54.0, "evaluate": 5.0, "dft": 17.0, "learn": 3.0,
              "feedback": 5.0}


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


@task(name="resolve-mlip")
def resolve_mlip_task(cfg: RelaxConfig) -> MLIPSpec:
    """Resolve the MLIP backend once per campaign (download, cache or fall back to CHGNet)."""
    return resolve_mlip(cfg)


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def missing_references(store: Store, campaign_id: str) -> list[str]:
    """Hashes of the campaign's known phases without a relaxation by its MLIP and settings yet."""
    _, spec, shash = relax_context(store, campaign_id)
    done_refs = store.reference_energies(spec.identity, shash)
    return sorted(h for h in store.known_phase_seeds(campaign_id) if h not in done_refs)


def acquire_stage(store: Store, campaign_id: str, round_index: int, cfg: CampaignConfig, campaign_dir: str) -> dict:
    """Relax the missing known phases first (the surrogate learns from them), then rank and choose."""
    intervals, compute = [], 0.0
    refs = missing_references(store, campaign_id) if cfg.acquisition.function != "all" else []
    if refs:
        relax = persisted(relax_chunk_task, campaign_dir, retries=cfg.relax.retries)
        futures = [relax.submit(store.url, campaign_id, "reference", c) for c in chunks(refs, cfg.relax.chunk_size)]
        for r in (f.result() for f in futures):
            intervals.append((r["start"], r["end"]))
            compute += r["compute_s"]
    res = persisted(acquire_task, campaign_dir, cached=False)(store.url, campaign_id, round_index,
                                                                references_relaxed=len(refs))
    return {"intervals": [*intervals, (res["start"], res["end"])], "compute_s": compute + res["compute_s"]}


def relax_stage(store: Store, campaign_id: str, round_index: int, cfg: CampaignConfig, campaign_dir: str,
                on_chunk=None) -> dict:
    """Submit relaxation chunks (missing reference phases first, then the candidates the acquisition chose, in
    order of choice, or every accepted candidate) and wait."""
    refs = missing_references(store, campaign_id)
    chosen = store.chosen(campaign_id, round_index)
    cands = chosen if chosen is not None else [c.hash for c in store.accepted(campaign_id, round_index)]
    over_budget = 0
    if cfg.budget.relaxations is not None:  # the round that reaches the budget relaxes only what fits
        left = max(cfg.budget.relaxations - store.relaxation_count(campaign_id, before_round=round_index), 0)
        cands, over_budget = cands[:left], max(len(cands) - left, 0)
    relax = persisted(relax_chunk_task, campaign_dir, retries=cfg.relax.retries)
    size = cfg.relax.chunk_size
    futures = [relax.submit(store.url, campaign_id, "reference", chunk) for chunk in chunks(refs, size)]
    futures += [relax.submit(store.url, campaign_id, "candidate", chunk) for chunk in chunks(cands, size)]
    results = []
    for f in futures:  # in submission order; progress moves as chunks finish
        results.append(f.result())
        if on_chunk is not None:
            on_chunk(len(results), len(futures))
    converged = sum(r["converged"] for r in results if r["kind"] == "candidate")
    summary = {"relaxed": len(cands), "relax_converged": converged, "references_relaxed": len(refs),
               "relaxations_reused": sum(r.get("reused", 0) for r in results), "over_budget": over_budget}
    store.advance_round(campaign_id, round_index, "relaxed", summary)
    return {"intervals": [(r["start"], r["end"]) for r in results], "compute_s": sum(r["compute_s"] for r in results)}


def budget_spent(store: Store, campaign_id: str, cfg: CampaignConfig, round_index: int) -> bool:
    """Whether ``budget.relaxations`` is set and the rounds before ``round_index`` have spent it."""
    budget = cfg.budget.relaxations
    if budget is None or store.round(campaign_id, round_index).status != "pending":
        return False
    return store.relaxation_count(campaign_id, before_round=round_index) >= budget


def dft_step(store: Store, campaign_id: str, round_index: int, cfg: CampaignConfig) -> dict:
    """The DFT subflow, or a recorded skip when ``dft.backend`` is ``none``."""
    t0 = time.time()
    if cfg.dft.backend == "none":
        get_run_logger().info("round %d: DFT step skipped (dft.backend: none)", round_index)
        store.advance_round(campaign_id, round_index, "dft", {"dft": "skipped (dft.backend: none)"})
        return {"intervals": [], "compute_s": 0.0}
    dft_stage(store.url, campaign_id, round_index)
    return {"intervals": [(t0, time.time())], "compute_s": time.time() - t0}


@flow(name="matloop-round", flow_run_name="{campaign_id}-round-{round_index}")
def campaign_round(store_url: str, campaign_id: str, round_index: int) -> dict:
    """One round: generate -> filter -> acquire -> relax -> evaluate -> dft -> learn -> feedback."""
    log = get_run_logger()
    store = Store(store_url)
    cfg = store.config(campaign_id)
    cdir = store.campaign(campaign_id).campaign_dir
    timings: dict[str, dict[str, Any]] = {}
    steps = [("generated", "generate", generate_task, True), ("filtered", "filter", filter_task, True),
             ("acquired", "acquire", None, False), ("relaxed", "relax", None, True), ("evaluated", "evaluate", evaluate_task, False),
             ("dft", "dft", None, False), ("learned", "learn", learn_task, False),
             ("completed", "feedback", feedback_task, False)]
    progress = Progress(campaign_id, round_index)
    done_pct = 0.0
    for state, name, step, cached in steps:
        share = STEP_SHARE[name]
        if round_reached(store.round(campaign_id, round_index).status, state):
            done_pct += share
            continue
        t0 = time.time()
        if name == "relax":
            base = done_pct
            out = relax_stage(store, campaign_id, round_index, cfg, cdir,
                              on_chunk=lambda i, n, base=base, share=share: progress.set(base + share * i / n))
        elif name == "acquire":
            out = acquire_stage(store, campaign_id, round_index, cfg, cdir)
        elif name == "dft":
            out = dft_step(store, campaign_id, round_index, cfg)
        else:
            res = persisted(step, cdir, cached=cached)(store_url, campaign_id, round_index)
            out = {"intervals": [(res["start"], res["end"])], "compute_s": res["compute_s"]}
        timings[name] = {"wall_s": time.time() - t0, **out}
        done_pct += share
        progress.set(done_pct)
        log.info("round %d: %s done in %.1f s", round_index, name, timings[name]["wall_s"])
    previous = store.round(campaign_id, round_index).summary.get("timings", {})
    store.advance_round(campaign_id, round_index, "completed", {"timings": {**previous, **timings}})
    progress.set(100.0)
    publish_round(store, campaign_id, round_index)
    return store.round(campaign_id, round_index).summary


@flow(name="matloop-campaign", flow_run_name="campaign-{campaign_id}")
def discovery_campaign(store_url: str, campaign_id: str) -> dict:
    """Run (or resume) every round of a campaign already written to the store."""
    store = Store(store_url)
    cfg = store.config(campaign_id)
    with CampaignLease(store, campaign_id, cfg.runner.lease_s):  # one live runner per campaign, however started
        return _run_rounds(store, campaign_id, cfg)


def _run_rounds(store: Store, campaign_id: str, cfg: CampaignConfig) -> dict:
    log = get_run_logger()
    store_url = store.url
    campaign = store.campaign(campaign_id)
    store.set_campaign(campaign_id, status="running")
    intervals: list[tuple[float, float]] = []
    if campaign.mlip_spec is None:
        t0 = time.time()
        spec = resolve_mlip_task(cfg.relax)
        intervals.append((t0, time.time()))
        store.set_campaign(campaign_id, mlip=spec.identity, mlip_spec=spec.model_dump())
        log.info("MLIP: %s%s", spec.identity, f" (fallback: {spec.fallback_reason})" if spec.fallback_reason else "")
    spec = MLIPSpec.model_validate(store.campaign(campaign_id).mlip_spec)
    runner = FlowRunContext.get().task_runner
    warm_up = []
    if isinstance(runner, SharedProcessPool):
        # workers start and load the model while the first round generates and filters
        warm_up = [load_mlip_task.submit(spec) for _ in range(cfg.runner.max_workers)]
    else:
        runner = make_task_runner(cfg.runner)
    round_flow = campaign_round.with_options(task_runner=runner)
    try:
        for r in range(cfg.rounds):
            if budget_spent(store, campaign_id, cfg, r):
                log.info("relaxation budget of %d spent: rounds %d-%d are not run", cfg.budget.relaxations, r,
                         cfg.rounds - 1)
                break
            if store.round(campaign_id, r).status != "completed":
                check_lease(campaign_id)
                round_flow(store_url, campaign_id, r)
        intervals += [(w["start"], w["end"]) for w in (f.result() for f in warm_up)]
    except BaseException:
        store.set_campaign(campaign_id, status="failed")
        raise
    store.set_campaign(campaign_id, status="completed")
    if cfg.report:  # a campaign whose report cannot be drawn is still a completed campaign: say so, go on
        try:
            log.info("report: %s", report_task(store_url, campaign_id))
        except Exception as exc:
            log.warning("campaign %s: the report files were not written (%s: %s); `matloop report %s` retries",
                        campaign_id, type(exc).__name__, exc, campaign_id)
    return {"campaign_id": campaign_id, "intervals": intervals,
            "rounds": [row.summary for row in store.rounds(campaign_id)]}


@task(name="report", retries=1)
def report_task(store_url: str, campaign_id: str) -> str:
    """The campaign's report files (tasks/campaign_report.py) under its directory."""
    from tasks.campaign_report import write_campaign_report

    return str(write_campaign_report(Store(store_url), campaign_id))


def start_campaign(cfg: CampaignConfig) -> str:
    """Check the config, load seeds and write the campaign; nothing is written if any of it fails."""
    from tasks.preflight import preflight

    seeds = preflight(cfg)
    return Store(cfg.store_url()).create_campaign(cfg, seeds)


def run_campaign(store_url: str, campaign_id: str, task_runner=None) -> dict:
    """Run or resume a stored campaign (extending it to more rounds if its config asks for them).

    ``task_runner`` (default: the one ``runner`` configures) may be a :class:`SharedProcessPool` the caller has
    entered already: its workers, and the MLIP each loaded, then serve many campaigns in turn.
    """
    store = Store(store_url)  # the flow's parameter is the URL without its password (kept in the environment)
    cfg = store.config(campaign_id)
    store.extend_rounds(campaign_id, cfg.rounds)
    runner = task_runner if task_runner is not None else make_task_runner(cfg.runner)
    return discovery_campaign.with_options(task_runner=runner)(store.url, campaign_id)
