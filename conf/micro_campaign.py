"""Typed configuration of a microstructure campaign (``matloop micro run``): a trained generator asked, round
after round, for the process conditions whose microstructures reach a target effective property.

A round proposes ``per_round`` process conditions inside the generator's training box, generates
``images_per_condition`` images for each, checks them (both phases present, volume fraction in bounds), computes
their property (taufactor's effective diffusivity, its tortuosity factor, or the volume fraction) and records
which conditions land in the target band. The next round's conditions come from the acquisition: a Gaussian
process over the scaled conditions, fitted to every evaluated condition so far, and the probability that a
condition's property lies in the band (``band``), or uniform random conditions (``random``, the control).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from conf.base import Strict

PROPERTIES = ("d_eff", "tortuosity", "volume_fraction")


class TargetConfig(Strict):
    """The property band a campaign looks for."""

    property: Literal["d_eff", "tortuosity", "volume_fraction"] = Field(
        "d_eff", description="d_eff: effective diffusivity D_eff/D_0 of the True phase along axis 0 (0 when it does "
        "not percolate); tortuosity: its tortuosity factor; volume_fraction: of the True phase.")
    low: float = Field(..., description="Lower edge of the band (inclusive), in the property's units.")
    high: float = Field(..., description="Upper edge of the band (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> TargetConfig:
        if not self.low < self.high:
            raise ValueError(f"target.low ({self.low}) must be below target.high ({self.high})")
        return self


class MicroAcquisitionConfig(Strict):
    function: Literal["band", "random"] = Field("band", description="band: most probable to land in the target "
                                                "band under the Gaussian process; random: uniform conditions.")
    initial: int = Field(4, ge=1, description="Conditions of the space-filling (Sobol) design; the surrogate takes "
                         "over once this many were asked for and at least 2 have a property value.")
    min_distance: float = Field(0.05, ge=0, lt=1, description="The surrogate's picks are at least this far from each "
                                "other and from conditions asked for before (in the unit box of scaled conditions), "
                                "unless the box is too crowded for that.")
    pool: int = Field(2048, ge=64, le=1_000_000, description="Candidate conditions scored per round (Sobol points).")


class ValidityConfig(Strict):
    volume_fraction: tuple[float, float] = Field((0.02, 0.98), description="An image's True-phase fraction must lie "
                                                 "in this range (a near-uniform image is no microstructure).")

    @model_validator(mode="after")
    def _bounds(self) -> ValidityConfig:
        lo, hi = self.volume_fraction
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"validity.volume_fraction must be [low, high] with 0 <= low < high <= 1 (got {lo}, {hi})")
        return self


class MicroCampaignConfig(Strict):
    name: str = Field("micro-campaign", min_length=1, max_length=200)
    generator: Path = Field(..., description="A checkpoint of `matloop micro train`.")
    target: TargetConfig
    space: dict[str, tuple[float, float]] | None = Field(
        None, description="Bounds of each process condition; default: the generator's training range (the box it "
        "learned; bounds outside it are refused).")
    rounds: int = Field(6, ge=1, le=1000)
    per_round: int = Field(4, ge=1, le=1000, description="Process conditions evaluated per round.")
    images_per_condition: int = Field(8, ge=1, le=1000)
    steps: int = Field(50, ge=1, le=1000, description="DDIM steps (diffusion generators).")
    guidance: float = Field(1.0, ge=0, le=20, description="Classifier-free guidance (diffusion; 1: none).")
    acquisition: MicroAcquisitionConfig = Field(default_factory=MicroAcquisitionConfig)
    validity: ValidityConfig = Field(default_factory=ValidityConfig)
    seed: int = Field(0, ge=0, le=100_000, description="Seeds the design, the surrogate and the generator's draws.")
    output_dir: Path = Field(Path("runs/micro"), description="Campaign folders (generated images) go here.")
    store_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite matloop.db in output_dir.")

    def url(self) -> str:
        return self.store_url or f"sqlite:///{(Path(self.output_dir) / 'matloop.db').resolve()}"
