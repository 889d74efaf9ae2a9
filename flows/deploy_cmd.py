"""``matloop deploy``: register deployments/prefect.yaml and give the campaign deployment its config and cron."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN_DEPLOYMENT = "matloop-scheduled-campaign/campaign"


def configure_campaign_deployment(config_path: Path, cron: str | None, timezone: str) -> None:
    """Point the campaign deployment at ``config_path`` and replace its schedules with ``cron`` (if given)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.client.schemas.schedules import CronSchedule

    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(CAMPAIGN_DEPLOYMENT)
        client.update_deployment(dep.id, DeploymentUpdate(parameters={**(dep.parameters or {}),
                                                                      "config_path": str(config_path)}))
        if cron:
            for schedule in dep.schedules:
                client.delete_deployment_schedule(dep.id, schedule.id)
            client.create_deployment_schedules(dep.id, [(CronSchedule(cron=cron, timezone=timezone), True)])


def deploy(config: Annotated[Path | None, typer.Option("--config", "-c", help="Campaign YAML the scheduled "
                                                       "campaign runs (default: the packaged one).")] = None,
           prefect_file: Annotated[Path, typer.Option(help="Deployment file.")] = ROOT / "deployments" / "prefect.yaml",
           ) -> None:
    """Register every deployment of deployments/prefect.yaml on the Prefect server at PREFECT_API_URL."""
    from conf import ConfigError, default_config_path, load_config
    from flows.cli_common import console, fail

    path = (config or default_config_path()).resolve()
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        fail(exc)
    if not os.environ.get("PREFECT_API_URL"):
        fail(RuntimeError("PREFECT_API_URL is not set: deployments live on a running Prefect server"))
    env = {**os.environ, "MATLOOP_HOME": os.environ.get("MATLOOP_HOME", str(ROOT))}
    prefect = str(Path(sys.executable).with_name("prefect"))
    proc = subprocess.run([prefect, "--no-prompt", "deploy", "--prefect-file", str(prefect_file), "--all"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        fail(RuntimeError(f"prefect deploy failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"))
    configure_campaign_deployment(path, cfg.schedule.cron, cfg.schedule.timezone)
    console.print(f"deployments registered from {prefect_file}; campaign config {path}"
                  + (f", cron '{cfg.schedule.cron}' ({cfg.schedule.timezone})" if cfg.schedule.cron else ""))
