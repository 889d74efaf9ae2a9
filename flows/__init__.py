"""Prefect flows of a matloop campaign and the ``matloop`` command line."""
