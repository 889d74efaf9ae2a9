"""Flows that deployments run: a campaign from a config file (scheduled), and resuming a stored one.

Both call :func:`flows.campaign.run_campaign`, so a deployed campaign runs exactly as ``matloop run`` does
(task runner from the config, store as the source of truth).
"""

from __future__ import annotations

import os

from prefect import flow, get_run_logger

from conf import load_config
from flows.campaign import run_campaign, start_campaign
from tasks.store import adopt_credentials


@flow(name="matloop-scheduled-campaign", flow_run_name="scheduled-{config_path}")
def scheduled_campaign(config_path: str, overrides: list[str] | None = None) -> dict:
    """Start a new campaign from ``config_path`` (with ``--set``-style ``overrides``) and run it, in the config's
    store, else the worker's MATLOOP_STORE_URL, else SQLite in the config's output_dir."""
    cfg = load_config(config_path, overrides or [])
    env_url = os.environ.get("MATLOOP_STORE_URL")
    url = adopt_credentials(cfg.store.url or env_url or cfg.store_url())  # the worker's store, password kept out
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"url": url})})
    cid = start_campaign(cfg)
    get_run_logger().info("campaign %s created in %s", cid, url)
    return run_campaign(url, cid)


@flow(name="matloop-resume-campaign", flow_run_name="resume-{campaign_id}")
def resume_campaign(store_url: str, campaign_id: str) -> dict:
    """Continue a stored campaign where it stopped."""
    return run_campaign(store_url, campaign_id)
