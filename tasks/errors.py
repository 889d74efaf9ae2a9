"""Named exceptions of the pipeline steps. Each carries the context needed to act on it."""

from __future__ import annotations


class MatloopError(Exception):
    """Base class of every error matloop raises on purpose."""


class SeedError(MatloopError):
    """Seed/reference structures are missing, empty or unusable for the target system."""


class StructureFileError(MatloopError):
    """A structure file (MP-20-format CSV, CIF folder, extended XYZ) cannot be read at all."""


class GeneratorError(MatloopError):
    """A generator cannot produce structures for the requested conditions."""


class MLIPUnavailableError(MatloopError):
    """The requested MLIP backend or model cannot be loaded (missing weights, no network, bad path)."""

    def __init__(self, backend: str, model: str, reason: str) -> None:
        super().__init__(f"MLIP backend {backend!r} with model {model!r} is unavailable: {reason}")
        self.backend, self.model, self.reason = backend, model, reason


class StoreError(MatloopError):
    """The store does not hold what a step needs (unknown campaign, round out of order, ...)."""


class CampaignBusyError(StoreError):
    """Another live runner holds the campaign's lease (tasks/lease.py)."""

    def __init__(self, campaign_id: str, owner: str, seconds_left: float) -> None:
        super().__init__(f"campaign {campaign_id} is being run by {owner} (its lease is renewed while it runs and "
                         f"expires {seconds_left:.0f} s from now if that runner has died); not started twice")
        self.campaign_id, self.owner, self.seconds_left = campaign_id, owner, seconds_left


class EvaluationError(MatloopError):
    """Energies cannot be turned into formation energies / hull distances (e.g. a missing reference)."""
