"""Flows that deployments run: a campaign from a config file (scheduled), and resuming a stored one.

Both call :func:`flows.campaign.run_campaign`, so a deployed campaign runs exactly as ``matloop run`` does
(task runner from the config, store as the source of truth).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from conf import load_config
from flows.campaign import run_campaign, start_campaign


@flow(name="matloop-scheduled-campaign", flow_run_name="scheduled-{config_path}")
def scheduled_campaign(config_path: str, overrides: list[str] | None = None) -> dict:
    """Start a new campaign from ``config_path`` (with ``--set``-style ``overrides``) and run it."""
    cfg = load_config(config_path, overrides or [])
    cid = start_campaign(cfg)
    get_run_logger().info("campaign %s created in %s", cid, cfg.store_url())
    return run_campaign(cfg.store_url(), cid)


@flow(name="matloop-resume-campaign", flow_run_name="resume-{campaign_id}")
def resume_campaign(store_url: str, campaign_id: str) -> dict:
    """Continue a stored campaign where it stopped."""
    return run_campaign(store_url, campaign_id)
