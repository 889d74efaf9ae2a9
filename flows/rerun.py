"""Rerun the failed relaxations of a campaign (``matloop rerun-failed``), only those, with fallback settings."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.round_steps import chunks
from tasks.context import relax_context
from tasks.rerun import rerun_chunk_task
from tasks.store import Store
from tasks.store.results_repo import attempt_of


@flow(name="matloop-rerun-failed", flow_run_name="{campaign_id}-rerun-failed")
def rerun_failed(store_url: str, campaign_id: str, statuses: list[str] | None = None,
                 overrides: dict | None = None) -> dict:
    """Rerun every candidate and known phase whose effective relaxation failed (optionally only ``statuses``)."""
    store = Store(store_url)
    cfg, spec, shash = relax_context(store, campaign_id)
    failed = store.failed_relaxations(campaign_id, spec.identity, shash, statuses)
    items = [(c.hash, r.status, r.attempt + 1) for c, r in failed]
    known = store.known_phase_seeds(campaign_id)
    refs = [(h, row.status, attempt_of(row.settings_hash) + 1)
            for h, row in store.reference_energies(spec.identity, shash).items()
            if h in known and row.status != "converged" and (not statuses or row.status in statuses)]
    futures = [rerun_chunk_task.submit(store_url, campaign_id, "reference", chunk, overrides or {})
               for chunk in chunks(refs, cfg.relax.chunk_size)]
    futures += [rerun_chunk_task.submit(store_url, campaign_id, "candidate", chunk, overrides or {})
                for chunk in chunks(items, cfg.relax.chunk_size)]
    items = items + refs
    results = [f.result() for f in futures]
    out = {"rerun": len(items), "converged": sum(r["converged"] for r in results),
           "still_failed": [s for r in results for s in r["statuses"] if s != "converged"]}
    get_run_logger().info("reran %d failed relaxation(s): %d converged", out["rerun"], out["converged"])
    return out
