"""Prefect flows of the DFT step: one subflow per round, and the rerun of failed or lost calculations.

Calculations are ``dft-calc`` task runs tagged ``dft``; a Prefect tag concurrency limit (``dft.concurrency``)
bounds how many run at once across every campaign on the server.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.task_runners import ThreadPoolTaskRunner

from conf.dft import DFTConfig
from conf.schema import CampaignConfig
from tasks.dft.calc import dft_calc_task
from tasks.dft.round import plan_round, requeue, settle_round
from tasks.store import Store


def ensure_tag_limit(tag: str, limit: int) -> None:
    """Create or update the tag concurrency limit (idempotent) and give back slots leaked by killed runs."""
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=tag, concurrency_limit=limit)
        release_stale_slots(client, tag)


def release_stale_slots(client, tag: str) -> int:
    """Give back slots of the ``tag`` limit that no running task run holds.

    A campaign killed during DFT leaves its slots taken: a server's lease repossessor frees them after the
    lease (60 s) expires, but the temporary server ``matloop run`` starts keeps leases in memory only, so the
    next run would wait forever. Slots of task runs still Running (other campaigns) are kept. Returns how many
    slots were released.
    """
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    held = client.read_concurrency_limit_by_tag(tag).active_slots
    live = []
    for task_run_id in held:
        try:
            state = client.read_task_run(task_run_id).state
        except Exception:  # the task run is gone
            continue
        if state is not None and state.is_running():
            live.append(task_run_id)
    name = f"tag:{tag}"
    active = client.read_global_concurrency_limit_by_name(name).active_slots
    if active <= len(live):
        return 0
    client.reset_concurrency_limit_by_tag(tag, slot_override=live)  # revoke stale leases, re-lease live ones
    client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=len(live)))
    return active - len(live)


def run_calcs(store_url: str, ids: list[int], cfg: DFTConfig) -> list[dict]:
    futures = [dft_calc_task.submit(store_url, i, cfg) for i in ids]
    return [f.result() for f in futures]


@flow(name="matloop-dft", flow_run_name="{campaign_id}-round-{round_index}-dft",
      task_runner=ThreadPoolTaskRunner(max_workers=32))
def dft_stage(store_url: str, campaign_id: str, round_index: int) -> dict:
    """Select this round's candidates, run them (and any missing elemental references), store DFT properties."""
    log = get_run_logger()
    store = Store(store_url)
    cfg = store.config(campaign_id)
    ensure_tag_limit("dft", cfg.dft.concurrency)
    ids, selection = plan_round(store, campaign_id, round_index, cfg)
    log.info("round %d: %d DFT calculation(s) to drive (%s)", round_index, len(ids), selection)
    results = run_calcs(store_url, ids, cfg.dft)
    for r in results:
        if r["state"] != "completed":
            log.warning("DFT %s (%s) ended %s: %s", r["id"], r["label"], r["state"], r["reason"])
    return settle_round(store, campaign_id, round_index, cfg, extra=selection)


@flow(name="matloop-dft-rerun", flow_run_name="{campaign_id}-dft-rerun",
      task_runner=ThreadPoolTaskRunner(max_workers=32))
def dft_rerun(store_url: str, campaign_id: str, states: list[str], config: dict | None = None) -> dict:
    """Rerun the campaign's calculations in ``states`` (failed, lost) with ``config`` (the campaign's own
    config with overrides, e.g. more SCF steps); then refresh the DFT properties of the rounds they belong to."""
    store = Store(store_url)
    cfg = CampaignConfig.model_validate(config) if config is not None else store.config(campaign_id)
    ensure_tag_limit("dft", cfg.dft.concurrency)
    ids, rounds = requeue(store, campaign_id, states, cfg)
    results = run_calcs(store_url, ids, cfg.dft)
    summaries = {r: settle_round(store, campaign_id, r, cfg) for r in rounds}
    return {"rerun": results, "rounds": summaries}
