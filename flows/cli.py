"""The ``matloop`` command line: run, status, candidates, export, report, evaluate, train, dft, lab, store,
rerun-failed, deploy."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from conf import ConfigError, load_config
from flows.cli_common import ConfigOpt, StoreOpt, console, err, fail, store_url
from flows.deploy_cmd import deploy
from flows.dft_cmd import dft_app
from flows.evaluate_cmd import evaluate
from flows.lab_cmd import lab_app
from flows.micro_cmd import micro_app
from flows.predictor_cmd import train_predictor_cmd
from flows.rerun_cmd import rerun_failed_cmd
from flows.store_cmd import store_app
from flows.train_cmd import release_checkpoint_cmd, train
from tasks.errors import CampaignBusyError, MatloopError

app = typer.Typer(help="Closed-loop generative materials discovery.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.command()
def run(config: ConfigOpt = None,
        set_: Annotated[list[str] | None,
                        typer.Option("--set", help="Override: dotted.key=value (YAML value).")] = None,
        resume: Annotated[str | None, typer.Option(help="Continue the campaign with this id.")] = None,
        store: StoreOpt = None,
        top: Annotated[int, typer.Option(min=0, help="Rows of the final candidates table.")] = 10,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True) -> None:
    """Run a campaign (or resume one) to completion and print the best candidates."""
    from flows.campaign import run_campaign, start_campaign
    from flows.progress import campaign_progress
    from flows.server import prefect_api
    from tasks.store import Store

    try:
        if resume:
            if set_:
                raise ConfigError("--set cannot change a stored campaign; resume uses the config it was started with")
            url = store_url(store, config)
            cid = resume
            Store(url).campaign(cid)
            from tasks.lease import live_lease

            held = live_lease(Store(url), cid)
            if held is not None:  # refused at once (run_campaign checks again, atomically)
                raise CampaignBusyError(cid, held[0], held[1] - time.time())
        else:
            cfg = load_config(config, set_ or [])
            url = store_url(store or cfg.store_url(), None, existing=False)
            if url != cfg.store_url():  # --store, or a password moved out of the config's URL
                cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"url": url})})
            cid = start_campaign(cfg)
            console.print(f"campaign [bold]{cid}[/bold] created in {url}")
    except (ConfigError, MatloopError) as exc:
        fail(exc)
    st = Store(url)
    from tasks.logs import LOG_ENV, route_library_output

    log_file = Path(st.campaign(cid).campaign_dir) / "matloop.log"
    os.environ[LOG_ENV] = str(log_file)  # worker processes started from here route theirs to the same file
    route_library_output(log_file)  # library warnings: to the campaign's log, not over the progress bars
    try:
        with prefect_api():
            if progress:
                with campaign_progress(st, cid, console):
                    run_campaign(url, cid)
            else:
                run_campaign(url, cid)
    except CampaignBusyError as exc:  # another runner took it between the check above and the start
        fail(exc)
    except Exception as exc:  # the flow logged the traceback; say what failed and how to continue
        err.print(f"[bold red]campaign {cid} failed:[/bold red] {escape(f'{type(exc).__name__}: {exc}')}\n"
                  f"fix the cause and continue with: matloop run --resume {cid} --store {escape(url)}")
        raise typer.Exit(code=1) from None
    report = Path(st.campaign(cid).campaign_dir) / "report" / "report.md"
    console.print(f"\ncampaign [bold]{cid}[/bold] {st.campaign(cid).status}; store: {url}; "
                  f"files: {st.campaign(cid).campaign_dir}" + (f"; report: {report}" if report.is_file() else ""))
    _candidates_table(url, cid, top)


@app.command()
def status(campaign_id: Annotated[str | None, typer.Argument()] = None, store: StoreOpt = None,
           config: ConfigOpt = None) -> None:
    """List campaigns, or show one campaign's rounds."""
    from flows.report import campaign_table, rounds_table

    try:
        url = store_url(store, config)
        console.print(rounds_table(url, campaign_id) if campaign_id else campaign_table(url))
    except (ConfigError, MatloopError) as exc:
        fail(exc)


@app.command()
def candidates(campaign_id: str, top: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 20,
               include_known: Annotated[bool, typer.Option("--include-known", help="Also those that relaxed into "
                                                           "known phases or earlier candidates.")] = False,
               store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """The best candidates of a campaign by energy above hull."""
    try:
        _candidates_table(store_url(store, config), campaign_id, top, include_known)
    except (ConfigError, MatloopError) as exc:
        fail(exc)


@app.command()
def export(campaign_id: str,
           format: Annotated[str, typer.Option("--format", "-f", help="cif | extxyz | csv")] = "cif",
           out: Annotated[Path, typer.Option(help="Output folder.")] = Path("export"),
           top: Annotated[int | None, typer.Option(min=1, help="Only the best N.")] = None,
           include_unrelaxed: Annotated[bool, typer.Option("--include-unrelaxed", help="Also candidates with no "
                                                           "relaxed energy (unrelaxed, failed, rejected).")] = False,
           store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Write candidates (relaxed structures where available) to files."""
    from tasks.export import FORMATS, export_candidates
    from tasks.store import Store

    if format not in FORMATS:
        fail(ValueError(f"unknown format {format!r}; allowed: {', '.join(FORMATS)}"))
    try:
        paths = export_candidates(Store(store_url(store, config)), campaign_id, format, out, top,
                                     include_unrelaxed)
    except (ConfigError, MatloopError) as exc:
        fail(exc)
    console.print(f"wrote {len(paths)} file(s) to {out}")


@app.command()
def report(campaign_id: str,
           out: Annotated[Path | None, typer.Option(help="Folder (default: <campaign_dir>/report).")] = None,
           top: Annotated[int, typer.Option(min=1, help="Best new candidates listed and written as CIF.")] = 10,
           store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Write the campaign's report: report.md, candidates.csv (units, cell geometry), hull.png, E_hull
    histograms per round, CIFs of the best new candidates."""
    from tasks.campaign_report import write_campaign_report
    from tasks.store import Store

    try:
        path = write_campaign_report(Store(store_url(store, config)), campaign_id, out, top)
    except (ConfigError, MatloopError) as exc:
        fail(exc)
    except OSError as exc:
        fail(OSError(f"cannot write the report to {exc.filename or out}: {exc.strerror or exc}"))
    console.print(f"report: {path}")


def _candidates_table(url: str, cid: str, top: int, include_known: bool = False) -> None:
    from flows.report import candidates_table

    console.print(candidates_table(url, cid, top, include_known))


app.command()(evaluate)
app.command()(train)
app.command("release-checkpoint")(release_checkpoint_cmd)
app.command("train-predictor")(train_predictor_cmd)
app.add_typer(dft_app, name="dft")
app.add_typer(lab_app, name="lab")
app.add_typer(micro_app, name="micro")
app.add_typer(store_app, name="store")
app.command("rerun-failed")(rerun_failed_cmd)
app.command()(deploy)


def main() -> None:
    """Entry point of the ``matloop`` script: process-wide defaults are set here, before Prefect loads."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # small cells: parallelism comes from worker processes
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline machines: no telemetry errors
    import warnings

    # pymatgen warns for every noble gas it meets while sorting elements by electronegativity: noise to a user
    warnings.filterwarnings("ignore", message="No Pauling electronegativity")
    app()


if __name__ == "__main__":
    main()
