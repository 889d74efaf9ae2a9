"""One Prefect API for a whole campaign run, shared with task worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

MIN_STARTUP_S = 120  # seconds the temporary API server may take to start


@contextmanager
def prefect_api() -> Iterator[str]:
    """Use ``PREFECT_API_URL`` if set; otherwise start one temporary local server for this run (its UI links are
    not printed: they stop working when the run ends; point PREFECT_API_URL at a `prefect server start` to watch).

    Without this, every process-pool worker would start its own temporary server (several seconds each)
    and record its task runs in its own database. The URL is exported to the environment so worker
    processes inherit it.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if url:
        os.environ["PREFECT_API_URL"] = url
        yield url
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    server = SubprocessASGIServer()
    # Prefect's 20 s default is too short on a busy 2-core machine (a new database migrates first): seen failing
    server.start(timeout=max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), MIN_STARTUP_S))
    os.environ["PREFECT_API_URL"] = server.api_url
    ui_before = os.environ.get("PREFECT_UI_URL")
    os.environ["PREFECT_UI_URL"] = ""  # no "View at" links: this server is gone when the run ends
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_UI_URL: ""}):
            yield server.api_url
    finally:
        _drain_prefect_workers()
        os.environ.pop("PREFECT_API_URL", None)
        if ui_before is None:
            os.environ.pop("PREFECT_UI_URL", None)
        else:
            os.environ["PREFECT_UI_URL"] = ui_before
        server.stop()


def _drain_prefect_workers() -> None:
    """Send queued logs and events before the temporary server goes away."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)
