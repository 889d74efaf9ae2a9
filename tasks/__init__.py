"""The campaign's steps: one module per step, each a pure function plus a thin Prefect task."""
