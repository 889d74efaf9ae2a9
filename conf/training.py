"""Typed configuration of a generator training run (``matloop train``, ``conf/train_*.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from conf.base import Strict
from models.diffusion import DiffusionConfig
from models.training import TrainConfig


class TrainRunConfig(Strict):
    generator: Literal["diffusion"] = "diffusion"
    data: list[Path] = Field(description="Training files: MP-20-format CSVs, CIF folders or extxyz.")
    holdout: float = Field(0.0, ge=0, lt=1, description="Share of the data held out (ids written beside the "
                           "checkpoint) for evaluation.")
    max_atoms: int = Field(20, ge=1, description="Structures with more sites are left out.")
    out: Path = Field(Path("checkpoints/diffusion.pt"), description="Checkpoint path.")
    threads: int | None = Field(None, ge=1, description="torch threads for training (default: all cores).")
    model: DiffusionConfig = DiffusionConfig()
    train: TrainConfig = TrainConfig()
