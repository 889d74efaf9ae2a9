"""Typed configuration of a property predictor's training run (``matloop train-predictor``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from conf.base import Strict

PredictedProperty = Literal["band_gap", "formation_energy_per_atom"]
UNITS = {"band_gap": "eV", "formation_energy_per_atom": "eV/atom"}


class PredictorModelConfig(Strict):
    n_members: int = Field(5, ge=1, le=32, description="Ensemble members (independently initialised MLPs).")
    hidden_dim: int = Field(128, ge=4)
    num_layers: int = Field(2, ge=1, le=8)
    dropout: float = Field(0.0, ge=0, lt=1)


class PredictorTrainConfig(Strict):
    property: PredictedProperty = Field("band_gap", description="Column to learn (band_gap in eV or "
                                        "formation_energy_per_atom in eV/atom).")
    data: list[Path] = Field(description="MP-20-format CSVs (plain or .gz): a formula column (pretty_formula or "
                             "formula) and the property column; rows without a value are skipped.")
    exclude_formulas: list[str] = Field(default_factory=list, description="Compositions never trained on (e.g. "
                                        "a benchmark's held-out phases); matched on the reduced formula.")
    holdout: float = Field(0.1, ge=0.02, lt=0.5, description="Share of compositions (whole formulas, never "
                           "split across train and test) held out to report MAE and the calibration of sigma.")
    out: Path = Field(Path("checkpoints/predictor-band_gap.pt"), description="Checkpoint path.")
    seed: int = 0
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(256, ge=8)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    nll_beta: float = Field(0.5, ge=0, le=1, description="beta-NLL weight (Seitzer et al. 2022): 0 is the plain "
                            "Gaussian NLL, which underfits the mean where it predicts a large variance; 0.5 is the "
                            "paper's default; 1 trains the mean as mean squared error does.")
    threads: int = Field(1, ge=1, description="torch threads.")
    model: PredictorModelConfig = PredictorModelConfig()
