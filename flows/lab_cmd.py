"""``matloop lab ingest``: plug measured properties into a campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

lab_app = typer.Typer(help="Lab measurements of a campaign's candidates.", no_args_is_help=True)


@lab_app.command("ingest")
def ingest(file: Path,
           campaign: Annotated[str, typer.Option("--campaign", help="Campaign id.")],
           skip_invalid: Annotated[bool, typer.Option(help="Store the valid rows and write the invalid ones "
                                                           "to a reject file instead of storing nothing.")] = False,
           store: Annotated[str | None, typer.Option(help="Store URL.")] = None) -> None:
    """Validate FILE (CSV or JSON; columns: candidate|cif|formula, property, value, unit, uncertainty,
    sample_id, date, notes) and store its measurements; they take precedence in the next round's feedback."""
    from flows.cli_common import console, fail, store_url
    from flows.lab import lab_ingest_flow
    from flows.server import prefect_api
    from tasks.errors import MatloopError
    from tasks.lab.ingest import ingest_lab_file
    from tasks.store import Store

    try:
        url = store_url(store, None)
        ingest_lab_file(Store(url), campaign, file, skip_invalid, dry_run=True)  # bad input: one line, at once
        with prefect_api():
            report = lab_ingest_flow(url, campaign, str(file), skip_invalid)
    except MatloopError as exc:
        fail(exc)
    console.print(f"{report['file']}: {report['rows']} rows, {report['written']} new measurement(s) stored"
                  + (f", {len(report['rejected'])} rejected -> {report['reject_file']}" if report["rejected"] else ""))
