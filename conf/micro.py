"""Typed configuration of microstructure datasets (issue 22): where the images come from and how they are split.

Three sources, one per ``kind``: a spinodal decomposition simulated by Cahn–Hilliard over a grid of mean composition
and annealing time, porous media from porespy's ``blobs`` over a grid of porosity and blobiness, or a folder of the
user's own images with a CSV of their process conditions. Splits are by condition (whole conditions held out for the
test, chosen inside the grid so the test is an interpolation) and, inside the remaining conditions, by sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from conf.base import Strict
from models.micro_collapse import MicroCollapseConfig
from models.micro_models import MicroDiffusionConfig, MicroGANConfig
from models.training import TrainConfig


class SpinodalSource(Strict):
    """Cahn–Hilliard spinodal decomposition (tasks/micro/physics.py), True = the A-rich phase."""

    kind: Literal["spinodal"] = "spinodal"
    mean_composition: list[float] = Field([0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7], min_length=2,
                                          description="A fraction of the alloy, each in (0, 1); the spinodal region "
                                          "is 0.21-0.79.")
    anneal_time: list[float] = Field([25.0, 50.0, 100.0, 200.0, 400.0], min_length=2,
                                     description="Dimensionless annealing times (steps x dt).")
    dt: float = Field(1.0, gt=0, le=5, description="Time step of the semi-implicit solver (stable below 2 gamma).")
    gamma: float = Field(1.0, gt=0, description="Gradient-energy coefficient (interface width ~ sqrt(gamma) px).")

    def grid(self) -> dict[str, list[float]]:
        return {"mean_composition": self.mean_composition, "anneal_time": self.anneal_time}

    @model_validator(mode="after")
    def _inside(self) -> SpinodalSource:
        bad = [c for c in self.mean_composition if not 0 < c < 1]
        if bad or any(t <= 0 for t in self.anneal_time):
            raise ValueError("mean_composition must lie in (0, 1) and anneal_time be > 0 "
                             f"(got {bad or self.anneal_time})")
        if self.dt >= 2 * self.gamma:  # the explicit φ³ − φ term: stable around φ = ±1 only for dt < 2 gamma
            raise ValueError(f"dt={self.dt} is unstable for gamma={self.gamma}: the scheme needs dt < 2 gamma")
        steps = [max(int(round(t / self.dt)), 1) for t in self.anneal_time]
        if len(set(steps)) < len(steps):
            raise ValueError(f"anneal_time {self.anneal_time} rounds to {steps} steps of dt={self.dt}: two "
                             "conditions would be the same simulation; space them by at least dt")
        return self


class PorousSource(Strict):
    """porespy ``blobs`` porous media, periodic, True = pore."""

    kind: Literal["porous"] = "porous"
    porosity: list[float] = Field([0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7], min_length=2,
                                  description="Pore volume fractions, each in (0, 1).")
    blobiness: list[float] = Field([0.5, 1.0, 1.5, 2.0], min_length=2,
                                   description="porespy blobiness per 64 px (larger: smaller features).")

    def grid(self) -> dict[str, list[float]]:
        return {"porosity": self.porosity, "blobiness": self.blobiness}

    @model_validator(mode="after")
    def _inside(self) -> PorousSource:
        if any(not 0 < p < 1 for p in self.porosity) or any(b <= 0 for b in self.blobiness):
            raise ValueError("porosity must lie in (0, 1) and blobiness be > 0")
        return self


class FolderSource(Strict):
    """The user's own images: PNG or TIFF files (two-phase, or grey thresholded at half the range) and a CSV with
    a ``file`` column (names relative to ``folder``) and one numeric column per process condition."""

    kind: Literal["folder"] = "folder"
    folder: Path
    conditions_csv: Path = Field(..., description="CSV: file, then one numeric column per condition.")


MicroSource = Annotated[Union[SpinodalSource, PorousSource, FolderSource], Field(discriminator="kind")]


class MicroDataConfig(Strict):
    """A microstructure dataset: its source, image size, samples per condition and splits."""

    source: MicroSource = Field(default_factory=SpinodalSource)
    size: Literal[32, 64, 128, 256] = Field(64, description="Images are size x size pixels.")
    per_condition: int = Field(32, ge=2, le=10_000, description="Images simulated per process condition.")
    test_conditions: int = Field(4, ge=1, description="Whole conditions held out for the test (interior grid points).")
    val_fraction: float = Field(0.1, ge=0, lt=0.5, description="Of the other conditions' images, held out for "
                                "validation (per condition).")
    seed: int = 0
    cache_dir: Path = Field(Path("data/micro"), description="Generated datasets are cached here by content hash.")


class MicroTrainConfig(Strict):
    """A microstructure generator's training run (``matloop micro train``): the dataset, the model family and its
    options, the shared training loop's settings. ``n_conditions`` and ``size`` come from the dataset."""

    data: MicroDataConfig = Field(default_factory=MicroDataConfig)
    model: Literal["gan", "diffusion"] = "diffusion"
    gan: MicroGANConfig = Field(default_factory=MicroGANConfig)
    diffusion: MicroDiffusionConfig = Field(default_factory=MicroDiffusionConfig)
    monitor: MicroCollapseConfig = Field(default_factory=MicroCollapseConfig,
                                         description="The GAN's mode-collapse monitor (every: 0 turns it off).")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=100, batch_size=32, lr=1e-3))
