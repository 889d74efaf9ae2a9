"""Live progress of a running campaign, read from the store (works with any task runner)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.round_steps import STEP_OF_STATE
from tasks.store import ROUND_STATES, Store
from tasks.store.views import round_progress


def reference_progress(store: Store, cid: str) -> tuple[int, int] | None:
    """(relaxed, total) known phases of the campaign with its MLIP; None before the MLIP is resolved."""
    from tasks.context import relax_context

    if store.campaign(cid).mlip_spec is None:
        return None
    _, spec, shash = relax_context(store, cid)
    known = store.known_phase_seeds(cid)
    done = store.reference_energies(spec.identity, shash)
    return sum(h in done for h in known), len(known)


@contextmanager
def campaign_progress(store: Store, cid: str, console: Console, interval: float = 1.0) -> Iterator[None]:
    """Show one bar per round (its steps) and one for the current round's relaxations until the block ends."""
    stop = threading.Event()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False)
    steps = len(ROUND_STATES) - 1
    bars: dict[int, int] = {}
    relax_bar = progress.add_task("relaxations", total=None, visible=False)
    ref_bar = progress.add_task("known phases", total=None, visible=False)

    def update() -> None:
        try:
            refs = None if progress.tasks[ref_bar].finished else reference_progress(store, cid)
            if refs is not None:  # relaxed before round 0 ranks or relaxes anything: shown, not a frozen 0/N
                progress.update(ref_bar, visible=True, completed=refs[0], total=max(refs[1], 1),
                                description="known phases (hull references) relaxed")
            for row in store.rounds(cid):
                if row.index not in bars:
                    bars[row.index] = progress.add_task(f"round {row.index}", total=steps)
                done = ROUND_STATES.index(row.status)
                running = f" -> {STEP_OF_STATE[ROUND_STATES[done + 1]]}" if 0 <= done < steps else ""
                progress.update(bars[row.index], completed=done,
                                description=f"round {row.index} [dim]{row.status}{running}[/dim]")
                if 0 < done < steps:
                    counts = round_progress(store.url, cid, row.index)
                    chosen = store.chosen(cid, row.index)  # with acquisition only the chosen ones are relaxed
                    total = len(chosen) if chosen is not None else counts["accepted"]
                    progress.update(relax_bar, visible=done >= 2, total=max(total, 1),
                                    completed=min(counts["relaxed"], total),
                                    description=f"round {row.index} relaxations")
        except Exception:  # the store may be busy; the next poll will catch up
            pass

    def poll() -> None:
        while not stop.wait(interval):
            update()
        update()  # the bars end at the final counts, not one interval stale

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
