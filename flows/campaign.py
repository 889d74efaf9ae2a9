"""The discovery campaign: one Prefect flow run per campaign, one subflow run per round.

Flows only orchestrate. The store is the source of truth: each round remembers the last step it
completed, so a resumed (or retried) campaign continues where it stopped, and relaxation chunks skip the
structures the store already holds. Task results are also persisted under the campaign directory with
cache keys made of the campaign, round and structure hashes, so Prefect retries reuse finished work.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from conf.schema import CampaignConfig, RelaxConfig
from flows.artifacts import Progress, publish_task
from flows.round_steps import ROUND_STEPS, RoundRun, StepReport
from flows.runners import SharedProcessPool, make_task_runner
from tasks.lease import CampaignLease, check_lease
from tasks.mlip import MLIPSpec, resolve_mlip
from tasks.relax import load_mlip_task
from tasks.store import Store, round_reached


@task(name="resolve-mlip")
def resolve_mlip_task(cfg: RelaxConfig) -> MLIPSpec:
    """Resolve the MLIP backend once per campaign (download, cache or fall back to CHGNet)."""
    return resolve_mlip(cfg)


def budget_spent(store: Store, campaign_id: str, cfg: CampaignConfig, round_index: int) -> bool:
    """Whether ``budget.relaxations`` is set and the rounds before ``round_index`` have spent it."""
    budget = cfg.budget.relaxations
    if budget is None or store.round(campaign_id, round_index).status != "pending":
        return False
    return store.relaxation_count(campaign_id, before_round=round_index) >= budget


@flow(name="matloop-round", flow_run_name="{campaign_id}-round-{round_index}")
def campaign_round(store_url: str, campaign_id: str, round_index: int) -> dict:
    """One round: the steps of :data:`flows.round_steps.ROUND_STEPS` that the round has not completed yet."""
    log = get_run_logger()
    store = Store(store_url)
    cfg, cdir = store.config(campaign_id), store.campaign(campaign_id).campaign_dir
    progress = Progress(campaign_id, round_index)
    timings: dict[str, dict[str, Any]] = {}
    done_pct = 0.0
    for step in ROUND_STEPS:
        if round_reached(store.round(campaign_id, round_index).status, step.state):
            done_pct += step.share
            continue
        run = RoundRun(store, campaign_id, round_index, cfg, cdir,
                       on_progress=lambda f, base=done_pct, share=step.share: progress.set(base + share * f))
        t0 = time.time()
        report = step.run(run)
        timings[step.name] = report.timing(time.time() - t0)
        done_pct += step.share
        progress.set(done_pct)
        log.info("round %d: %s done in %.1f s", round_index, step.name, timings[step.name]["wall_s"])
    previous = store.round(campaign_id, round_index).summary.get("timings", {})
    store.advance_round(campaign_id, round_index, "completed", {"timings": {**previous, **timings}})
    progress.set(100.0)
    t0 = time.time()
    published = StepReport.of(publish_task(store_url, campaign_id, round_index)).timing(time.time() - t0)
    store.advance_round(campaign_id, round_index, "completed", {"timings": {**previous, **timings,
                                                                            "publish": published}})
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
    worker_start: list[tuple[float, float]] = []  # each worker: process started -> its model load began
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
        warm_up = [load_mlip_task.submit(spec, cfg.relax.engine) for _ in range(cfg.runner.max_workers)]
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
                # a round's subflow run sends no heartbeat of its own: the campaign's flow run sends them (Prefect's
                # crash detection), the campaign lease guards the rounds, and a heartbeat thread costs its flow run
                # up to 1 s to stop
                with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                    round_flow(store_url, campaign_id, r)
        for w in (f.result() for f in warm_up):
            intervals.append((w.start, w.end))
            worker_start.append((w.process_start, w.start))
    except BaseException:
        store.set_campaign(campaign_id, status="failed")
        raise
    store.set_campaign(campaign_id, status="completed")
    if cfg.report:  # a campaign whose report cannot be drawn is still a completed campaign: say so, go on
        try:
            t0 = time.time()
            log.info("report: %s", report_task(store_url, campaign_id))
            intervals.append((t0, time.time()))  # our code's time (plots, CIFs), not orchestration
        except Exception as exc:
            log.warning("campaign %s: the report files were not written (%s: %s); `matloop report %s` retries",
                        campaign_id, type(exc).__name__, exc, campaign_id)
    return {"campaign_id": campaign_id, "intervals": intervals, "worker_start": worker_start,
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
