"""``matloop rerun-failed``: rerun only the failed relaxations of a campaign with fallback settings."""

from __future__ import annotations

from typing import Annotated

import typer


def rerun_failed_cmd(
    campaign_id: str,
    reason: Annotated[list[str] | None, typer.Option(help="Only relaxations that ended so (repeatable): exploded, "
                                                         "not-converged, nan, error. Default: all.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override the fallback: relax.key=value, e.g. "
                                                   "relax.max_steps=500 or relax.optimizer=BFGS.")] = None,
    store: Annotated[str | None, typer.Option(help="Store URL.")] = None,
) -> None:
    """Rerun failed relaxations (each attempt recorded); converged reruns feed the next round."""
    import yaml

    from conf import ConfigError
    from conf.schema import RelaxConfig
    from flows.cli_common import console, fail, store_url
    from flows.rerun import rerun_failed
    from flows.server import prefect_api
    from tasks.errors import MatloopError
    from tasks.rerun import REASONS
    from tasks.store import Store

    try:
        bad = [r for r in reason or [] if r not in REASONS]
        if bad:
            raise ConfigError(f"unknown --reason {bad}; allowed: {', '.join(REASONS)}")
        overrides = {}
        for assignment in set_ or []:
            key, sep, value = assignment.partition("=")
            if not sep or not key.startswith("relax.") or key.count(".") != 1:
                raise ConfigError(f"--set {assignment!r}: use relax.key=value")
            overrides[key.split(".", 1)[1]] = yaml.safe_load(value)
        try:
            RelaxConfig.model_validate({**RelaxConfig().model_dump(), **overrides})
        except ValueError as exc:
            raise ConfigError(f"--set: {exc}") from None
        url = store_url(store, None)
        Store(url).campaign(campaign_id)
    except (ConfigError, MatloopError) as exc:
        fail(exc)
    with prefect_api():
        out = rerun_failed(url, campaign_id, [REASONS[r] for r in reason or []] or None, overrides)
    console.print(f"reran {out['rerun']} failed relaxation(s): {out['converged']} converged"
                  + (f", still failed: {', '.join(out['still_failed'])}" if out["still_failed"] else ""))
