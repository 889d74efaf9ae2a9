"""``matloop dft ls|rerun``: see every DFT calculation of a campaign, and rerun the failed or lost ones."""

from __future__ import annotations

from typing import Annotated

import typer

dft_app = typer.Typer(help="DFT calculations of a campaign.", no_args_is_help=True)

RERUN_STATES = ("failed", "lost")


@dft_app.command("ls")
def ls(campaign_id: str,
       state: Annotated[list[str] | None, typer.Option(help="Only these states (repeatable): queued, submitted, "
                                                           "running, completed, failed, lost.")] = None,
       store: Annotated[str | None, typer.Option(help="Store URL (default: MATLOOP_STORE_URL or the "
                                                       "default config's).")] = None) -> None:
    """One row per calculation of the campaign and the elemental references it uses."""
    from rich.table import Table

    from flows.cli_common import console, fail, store_url
    from tasks.candidate import structure_from_json
    from tasks.errors import MatloopError
    from tasks.store import Store

    try:
        st = Store(store_url(store, None))
        st.campaign(campaign_id)
        rows = st.dft_calcs(campaign_id, state or None, with_references=True)
    except MatloopError as exc:
        fail(exc)
    table = Table(title=f"DFT calculations of {campaign_id} ({len(rows)})")
    for col in ("id", "label", "formula", "kind", "round", "state", "backend", "job", "E (eV/atom)", "wall (s)", "settings",
                "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r.id), r.label, structure_from_json(r.structure).composition.reduced_formula, r.kind, "" if r.round_index is None else str(r.round_index), r.state,
                      r.backend, r.job_id or "", "" if r.energy_per_atom is None else f"{r.energy_per_atom:.4f}",
                      "" if r.wall_time_s is None else f"{r.wall_time_s:.0f}", r.settings_hash,
                      (r.reason or "")[:160] + (f" (attempt {len(r.history) + 1})" if r.history else ""))
    console.print(table)


@dft_app.command("rerun")
def rerun(campaign_id: str,
          state: Annotated[list[str] | None, typer.Option(help="Rerun calculations in these states: failed, lost "
                                                              "(repeatable; default both).")] = None,
          set_: Annotated[list[str] | None, typer.Option("--set", help="Corrected settings for the rerun: "
                                                         "dft.key=value, e.g. dft.cp2k.max_scf=100.")] = None,
          store: Annotated[str | None, typer.Option(help="Store URL.")] = None) -> None:
    """Rerun failed/lost calculations (optionally with corrected ``dft.*`` settings) and refresh the rounds'
    DFT properties. Each earlier attempt stays in the calculation's history."""
    from conf import ConfigError
    from conf.loader import apply_override, validate_config
    from flows.cli_common import console, fail, store_url
    from flows.dft import dft_rerun
    from flows.server import prefect_api
    from tasks.errors import MatloopError
    from tasks.store import Store

    states = list(state or RERUN_STATES)
    try:
        bad = [s for s in states if s not in RERUN_STATES]
        if bad:
            raise ConfigError(f"cannot rerun calculations in {bad}; allowed: {', '.join(RERUN_STATES)}")
        url = store_url(store, None)
        st = Store(url)
        data = st.campaign(campaign_id).config
        for assignment in set_ or []:
            if not assignment.startswith("dft."):
                raise ConfigError(f"--set {assignment!r}: a rerun may change dft.* settings only")
            apply_override(data, assignment)
        cfg = validate_config(data, f"campaign {campaign_id} with --set")
    except (ConfigError, MatloopError) as exc:
        fail(exc)
    with prefect_api():
        out = dft_rerun(url, campaign_id, states, cfg.model_dump(mode="json"))
    done = out["rerun"]
    console.print(f"reran {len(done)} calculation(s): "
                  + (", ".join(f"{r['id']} {r['label']} -> {r['state']}" for r in done) or "none matched"))
    if any(r["state"] != "completed" for r in done):
        raise typer.Exit(code=1)
