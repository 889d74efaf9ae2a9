"""Typed configuration of a generator training run (``matloop train``, ``conf/train_*.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from conf.base import Strict
from models.collapse import CollapseConfig
from models.diffusion import DiffusionConfig
from models.gan import GANConfig
from models.training import TrainConfig

MODEL_CONFIGS = {"diffusion": DiffusionConfig, "gan": GANConfig}


class TrainRunConfig(Strict):
    generator: Literal["diffusion", "gan"] = "diffusion"
    data: list[Path] = Field(description="Training files: MP-20-format CSVs, CIF folders or extxyz.")
    exclude: list[Path] = Field(default_factory=list, description="Structure files (same formats as data) whose "
                                "structures must not be trained on, e.g. a discovery benchmark's held-out phases: "
                                "every training structure StructureMatcher matches to one of them is dropped.")
    holdout: float = Field(0.0, ge=0, lt=1, description="Share of the data held out (ids written beside the "
                           "checkpoint) for evaluation.")
    max_atoms: int = Field(20, ge=1, description="Structures with more sites are left out.")
    columns: dict[str, list[str]] = Field(default_factory=dict, description="Other names of a property column, "
                                          "per property: in a file without the property's column, the first of "
                                          "these it has is read instead (e.g. band_gap: [bandgap_optb88vdw]).")
    unlabelled_systems: list[str] = Field(default_factory=list, description="Chemical systems (e.g. Li-V-O) whose "
                                          "structures (those of the system and of its sub-systems) are trained on "
                                          "without their property labels: a benchmark's system keeps its values "
                                          "away from the model, not its structures.")
    out: Path = Field(Path("checkpoints/diffusion.pt"), description="Checkpoint path (default: "
                      "checkpoints/<generator>.pt).")
    threads: int | None = Field(None, ge=1, description="torch threads for training (default: all cores).")
    model: DiffusionConfig | GANConfig = Field(DiffusionConfig(), description="Architecture of the generator "
                                               "family named by `generator` (DiffusionConfig or GANConfig).")
    train: TrainConfig = TrainConfig()
    collapse: CollapseConfig = Field(CollapseConfig(), description="GAN only: mode-collapse monitoring.")

    @model_validator(mode="before")
    @classmethod
    def _model_of_generator(cls, raw: Any) -> Any:
        """Validate ``model`` as the config class of ``generator`` (so field errors name the right class)."""
        if isinstance(raw, dict):
            kind = raw.get("generator", "diffusion")
            if kind in MODEL_CONFIGS:
                model = raw.get("model", {})
                raw = {"out": f"checkpoints/{kind}.pt", **raw,
                       "model": model if isinstance(model, MODEL_CONFIGS[kind])
                       else MODEL_CONFIGS[kind].model_validate(model or {})}
        return raw

    @model_validator(mode="after")
    def _systems_parse(self) -> TrainRunConfig:
        from pymatgen.core import Element

        for system in self.unlabelled_systems:
            bad = [el for el in system.split("-") if not Element.is_valid_symbol(el)]
            if bad:
                raise ValueError(f"unlabelled_systems: {system!r} has unknown element(s) {bad}; write e.g. Li-V-O")
        return self
