"""Prefect UI artifacts of a campaign: per-round tables and summaries, and live progress.

Keys are stable per campaign (``matloop-<id>-best-candidates``, ``matloop-<id>-round-summary``), so every round
adds a version of the same artifact and the Artifacts page compares them across rounds.
"""

from __future__ import annotations

import time
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from tasks.results import TaskRecord
from tasks.round_report import best_candidates, round_markdown
from tasks.store import Store


def artifact_key(cid: str, what: str) -> str:
    return f"matloop-{cid.lower()}-{what}"


def publish_round(store: Store, cid: str, r: int, top: int = 10) -> None:
    """The round's best-candidates table and its markdown summary (with the E_hull plot)."""
    rows = best_candidates(store, cid, top)
    create_table_artifact(rows or [{"formula": "-", "note": "no converged new candidate yet"}],
                          key=artifact_key(cid, "best-candidates"),
                          description=f"Best new candidates after round {r} (MLIP E_hull, eV/atom)")
    ranked = store.acquisitions(cid, r)
    if ranked:  # what the acquisition predicted and chose this round
        create_table_artifact([{k: x[k] for k in ("formula", "hash", "predicted_e_above_hull", "sigma", "value",
                                                  "chosen", "rank")} for x in ranked],
                              key=artifact_key(cid, "acquisition"),
                              description=f"Round {r}: {ranked[0]['function']} acquisition (predicted E_hull and "
                                          "sigma in eV/atom; chosen ones are relaxed)")
    create_markdown_artifact(round_markdown(store, cid, r), key=artifact_key(cid, "round-summary"),
                             description=f"Round {r} summary")


@task(name="publish", retries=1)
def publish_task(store_url: str, campaign_id: str, round_index: int) -> TaskRecord:
    """The round's artifacts as a task of its own: their tables and plot are work, timed as the round's
    ``publish`` step (not orchestration overhead)."""
    start = time.time()
    publish_round(Store(store_url), campaign_id, round_index)
    return TaskRecord.since(start)


class Progress:
    """A progress artifact for one round, moved forward at most once every ``min_interval_s`` (each move is an API
    call; a round of small steps would otherwise make dozens a second) and always when it reaches 100."""

    def __init__(self, cid: str, r: int, min_interval_s: float = 1.0) -> None:
        self.value = 0.0
        self.min_interval_s = min_interval_s
        self._sent = time.monotonic()
        self.id: UUID = create_progress_artifact(0.0, key=artifact_key(cid, f"round-{r}-progress"),
                                                 description=f"Round {r}: generate, filter, acquire, relax, "
                                                             "evaluate, dft, learn, feedback")

    def set(self, percent: float) -> None:
        self.value = max(self.value, min(100.0, percent))
        if self.value >= 100.0 or time.monotonic() - self._sent >= self.min_interval_s:
            update_progress_artifact(self.id, self.value)
            self._sent = time.monotonic()
