"""Typed configuration of the DFT step (``dft:`` in a campaign config)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from conf.base import Strict


class CP2KSettings(Strict):
    """Small-cell CP2K settings that finish in tens of seconds per 2-8 atom cell on one core."""

    calculation: Literal["static", "relax"] = "static"
    functional: Literal["PBE"] = "PBE"
    basis_family: str = Field("DZVP-MOLOPT-SR-GTH", description="Basis family; potentials GTH-<functional>-qN "
                              "are matched to each element's basis valence.")
    cutoff: float = Field(300.0, gt=0, description="Plane-wave cutoff, Ry.")
    eps_default: float = Field(1e-10, gt=0)
    eps_scf: float = Field(1e-6, gt=0, description="SCF convergence, Hartree.")
    max_scf: int = Field(50, ge=1, description="Most SCF iterations per outer loop.")
    max_errors: int = Field(5, ge=0, description="custodian corrections (e.g. SCF mixing changes) before a "
                            "calculation is given up as failed.")
    kpoints_per_atom: int = Field(16, ge=1, description="k-point density (pymatgen automatic_density kppa).")
    band_gap: bool = Field(True, description="static: print the Kohn-Sham levels at the SCF's irreducible "
                           "k-points after the SCF and store the band gap (seconds for a small cell).")
    spin_polarized: Literal["auto", "yes", "no"] = Field("auto", description="auto: spin polarised only when "
                                                          "the composition holds a magnetic element.")
    cp2k_data_dir: Path = Field(Path("/usr/share/cp2k"), description="CP2K's data folder (BASIS_MOLOPT, "
                                "GTH_POTENTIALS), e.g. from the Debian package cp2k-data.")
    pmg_data_dir: Path | None = Field(None, description="pymatgen's CP2K data (`pmg config --cp2k`); default: "
                                      "PMG_CP2K_DATA_DIR, else built once under ~/.cache/matloop.")
    command: str = Field("cp2k.psmp", description="CP2K executable.")


_NAME = r"^[A-Za-z0-9_.@+-]+$"


class SlurmSettings(Strict):
    """How the ``slurm`` backend submits each calculation (one job per calculation)."""

    partition: str | None = Field(None, pattern=_NAME)
    account: str | None = Field(None, pattern=_NAME)
    walltime: str = Field("00:30:00", pattern=r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$")
    cores: int = Field(1, ge=1)
    memory: str = Field("2G", pattern=r"^\d+[KMGT]?$")
    modules: list[str] = Field(default_factory=list, description="`module load` lines for the job.")
    extra_directives: list[str] = Field(default_factory=list, description="Extra sbatch options, e.g. --qos=x.")
    python: str | None = Field(None, description="Python of the matloop install on the compute nodes; "
                               "default: the submitting interpreter (a shared file system).")
    poll_seconds: float = Field(5.0, gt=0, description="Seconds between squeue/scontrol polls.")

    @field_validator("extra_directives")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not v.startswith("--") or any(c in v for c in "\n\r\0")]
        if bad:
            raise ValueError(f"extra_directives must be single-line long options like '--qos=high'; got {bad}")
        return value

    @field_validator("modules")
    @classmethod
    def _modules(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.fullmatch(r"[A-Za-z0-9_./+-]+", v)]
        if bad:
            raise ValueError(f"modules must be module names like 'cp2k/2023.1'; got {bad}")
        return value


class DFTSelection(Strict):
    per_round: int = Field(2, ge=0, description="Candidates sent to DFT per round.")
    per_campaign: int = Field(20, ge=0, description="Most candidates sent to DFT in the whole campaign.")
    max_e_above_hull: float = Field(0.3, description="Only candidates within this MLIP E_hull (eV/atom).")
    max_sites: int = Field(8, ge=1, description="Only cells with at most this many sites (cost grows ~N^3).")
    acquisition: Literal["greedy", "lcb", "ei", "random"] = Field(
        "greedy", description="How candidates are ranked on their predicted DFT E_hull (the MLIP value plus a "
        "correction learned from the campaign's completed DFT calculations, with its uncertainty): greedy (lowest "
        "mean), lcb (mean - kappa * sigma), ei (expected improvement below the stability threshold), random.")
    kappa: float = Field(1.0, ge=0, description="Exploration weight of lcb (in sigmas).")
    correction_prior_sigma: float = Field(0.1, gt=0, description="Prior spread (eV/atom) of the per-element "
                                          "MLIP-to-DFT formation-energy correction.")


class DFTConfig(Strict):
    backend: Literal["none", "local", "slurm"] = "none"
    code: Literal["cp2k", "vasp"] = "cp2k"
    concurrency: int = Field(2, ge=1, description="Prefect tag concurrency limit 'dft' (calculations at once).")
    local_timeout_s: float = Field(3600.0, gt=0, description="A local calculation running longer fails.")
    local_prefork: bool = Field(True, description="Fork local workers from a server that imported the DFT stack "
                                "once (saves ~4 s per calculation); false: a fresh process each.")
    references_dir: Path | None = Field(None, description="Where shared elemental references run; default: "
                                        "<output_dir>/dft-references.")
    selection: DFTSelection = DFTSelection()
    cp2k: CP2KSettings = CP2KSettings()
    slurm: SlurmSettings = SlurmSettings()

    @model_validator(mode="after")
    def _runnable(self) -> DFTConfig:
        if self.code == "vasp" and self.backend == "local":
            raise ValueError("dft.code=vasp runs through dft.backend=slurm on a cluster with VASP; "
                             "use code=cp2k for local calculations")
        return self
