"""Live progress of a running campaign, read from the store (works with any task runner)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tasks.store import ROUND_STATES, Store
from tasks.store.views import round_progress


@contextmanager
def campaign_progress(store: Store, cid: str, console: Console, interval: float = 1.0) -> Iterator[None]:
    """Show one bar per round (its steps) and one for the current round's relaxations until the block ends."""
    stop = threading.Event()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False)
    steps = len(ROUND_STATES) - 1

    def poll() -> None:
        bars: dict[int, int] = {}
        relax_bar = progress.add_task("relaxations", total=None, visible=False)
        while True:
            try:
                for row in store.rounds(cid):
                    if row.index not in bars:
                        bars[row.index] = progress.add_task(f"round {row.index}", total=steps)
                    done = ROUND_STATES.index(row.status)
                    progress.update(bars[row.index], completed=done,
                                    description=f"round {row.index} [dim]{row.status}[/dim]")
                    if 0 < done < steps:
                        counts = round_progress(store.url, cid, row.index)
                        progress.update(relax_bar, visible=done >= 2, total=max(counts["accepted"], 1),
                                        completed=counts["relaxed"],
                                        description=f"round {row.index} relaxations")
            except Exception:  # the store may be busy; the next poll will catch up
                pass
            if stop.wait(interval):
                return

    with progress, _prefect_logs_through(console):
        thread = threading.Thread(target=poll, name="matloop-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)


@contextmanager
def _prefect_logs_through(console: Console) -> Iterator[None]:
    """Print Prefect's console logs through ``console`` so they scroll above the live bars."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in logging.root.manager.loggerDict)]
    handlers = {h for lg in loggers if isinstance(lg, logging.Logger) for h in lg.handlers
                if isinstance(h, PrefectConsoleHandler)}
    saved = {h: h.console for h in handlers}
    for h in handlers:
        h.console = console
    try:
        yield
    finally:
        for h, original in saved.items():
            h.console = original
