"""What every ``matloop`` command module shares: the consoles, the one-line error exit and the store lookup.

Command modules (``flows/*_cmd.py``) import from here; ``flows/cli.py`` assembles the app from them, so no
module imports back up into the app."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from conf import load_config

# piped output (files, CI logs) gets wide tables instead of rich's 80-column default
# emoji off: campaign names such as "discovery:Ba-Ti-O:gan:on:s0" must not print ":on:" as an emoji
console = Console(width=None if sys.stdout.isatty() else 200, emoji=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200, emoji=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c",
                                                help="Campaign YAML (default: packaged campaign.yaml).")]
StoreOpt = Annotated[str | None, typer.Option("--store",
                                              help="Store URL (default: MATLOOP_STORE_URL or the config's).")]


def store_url(store: str | None, config: Path | None, existing: bool = True) -> str:
    """The store named by ``--store``, MATLOOP_STORE_URL or the config, without its password (kept in this
    process's environment only, see tasks/store/secrets.py); with ``existing`` it must exist already."""
    from tasks.store import adopt_credentials
    from tasks.store.engine import require_store

    url = adopt_credentials(store or os.environ.get("MATLOOP_STORE_URL") or load_config(config).store_url())
    return require_store(url) if existing else url


def fail(exc: Exception) -> None:
    """One red ``error:`` line on stderr (exit 2, no traceback)."""
    # "[csv]" in a message is text, not markup; one logical line, never wrapped inside a path or a phrase
    err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(code=2)
