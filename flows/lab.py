"""The lab-result ingestion flow (also deployable): validate a file and store its measurements."""

from __future__ import annotations

from prefect import flow

from tasks.lab.ingest import lab_ingest_task


@flow(name="matloop-lab-ingest", flow_run_name="{campaign_id}-lab-ingest")
def lab_ingest_flow(store_url: str, campaign_id: str, path: str, skip_invalid: bool = False) -> dict:
    """Ingest ``path`` (CSV or JSON inside the campaign's lab.input_dir); the next round's feedback uses it."""
    return lab_ingest_task(store_url, campaign_id, path, skip_invalid)
