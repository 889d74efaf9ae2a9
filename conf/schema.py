"""Typed campaign configuration.

Every block is a pydantic model with ``extra="forbid"`` so that a misspelt key or a value of the wrong
type is reported once, with its dotted path, before anything runs. The models are frozen: a step gets
the sub-config it needs and cannot change it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pymatgen.core.periodic_table import Element

from conf.base import Strict
from conf.dft import DFTConfig
from conf.generator import GeneratorConfig, SubstitutionGeneratorConfig
from conf.lab import LabConfig
from conf.loop import AcquisitionConfig, BudgetConfig, EvaluateConfig, FeedbackConfig, LearnConfig

PropertyName = Literal["e_above_hull", "formation_energy_per_atom", "energy_per_atom", "band_gap"]


class TargetRange(Strict):
    """A property target: a range (``min``/``max``, either may be open) or a single ``value``."""

    min: float | None = None
    max: float | None = None
    value: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TargetRange:
        if self.value is not None and (self.min is not None or self.max is not None):
            raise ValueError("give either 'value' or 'min'/'max', not both")
        if self.value is None and self.min is None and self.max is None:
            raise ValueError("a target needs 'value', 'min' or 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self

    def contains(self, x: float, tolerance: float = 0.0) -> bool:
        """Whether ``x`` satisfies the target (a ``value`` target uses ``tolerance``)."""
        if self.value is not None:
            return abs(x - self.value) <= tolerance
        return (self.min is None or x >= self.min) and (self.max is None or x <= self.max)


class TargetConfig(Strict):
    """What the campaign looks for."""

    chemical_system: list[str] = Field(description="Elements of the target system, e.g. ['Mg', 'Si', 'O'].")
    oxidation_states: dict[str, int] | None = Field(
        None, description="Oxidation state per element used by charge-balanced generators; default: "
        "pymatgen's most common oxidation state of each element.")
    include_subsystems: bool = Field(True, description="Also propose phases of binary sub-systems.")
    max_atoms: int = Field(20, ge=1, le=200, description="Most sites in a proposed cell.")
    properties: dict[PropertyName, TargetRange] = Field(
        default_factory=lambda: {"e_above_hull": TargetRange(max=0.1)},
        description="Property targets; energies in eV/atom, band gap in eV.")

    @field_validator("chemical_system", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return v.split("-") if isinstance(v, str) else v

    @field_validator("chemical_system")
    @classmethod
    def _elements(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("the chemical system is empty")
        for el in v:
            if not Element.is_valid_symbol(el):
                raise ValueError(f"unknown element {el!r}")
        if len(set(v)) != len(v):
            raise ValueError(f"repeated element in {v}")
        return v

    @model_validator(mode="after")
    def _oxidation_states_cover_system(self) -> TargetConfig:
        if self.oxidation_states is not None:
            missing = set(self.chemical_system) - set(self.oxidation_states)
            extra = set(self.oxidation_states) - set(self.chemical_system)
            if missing or extra:
                raise ValueError(f"oxidation_states must name exactly the chemical system's elements "
                                 f"(missing {sorted(missing)}, extra {sorted(extra)})")
        else:
            stateless = [el for el in self.chemical_system if not Element(el).oxidation_states]
            if stateless:
                raise ValueError(f"{', '.join(stateless)} has no known oxidation state, so no charge-balanced "
                                 "composition can be built: give target.oxidation_states for every element")
        return self


class SeedSource(Strict):
    """One source of seed/reference structures.

    ``builtin``: pymatgen's AFLOW prototypes and bundled structures plus ASE's elemental reference states
    (offline). ``csv``: an MP-20-format CSV (columns ``material_id``, ``cif``, ...). ``cif_dir``: a folder of
    CIF files. ``extxyz``: an extended-XYZ file. ``materials_project``: the Materials Project API
    (needs ``mp-api`` and ``MP_API_KEY``).
    """

    kind: Literal["builtin", "csv", "cif_dir", "extxyz", "materials_project"]
    path: Path | None = None
    limit: int | None = Field(None, ge=1, description="Read at most this many structures.")

    @model_validator(mode="after")
    def _path_needed(self) -> SeedSource:
        if self.kind in ("csv", "cif_dir", "extxyz") and self.path is None:
            raise ValueError(f"seed source kind {self.kind!r} needs a 'path'")
        return self


class Decoration(Strict):
    """A known phase built from a seed template by a species replacement (e.g. rocksalt NaCl -> MgO)."""

    template: str = Field(description="Reduced formula of the template seed, e.g. 'NaCl'.")
    label: str | None = Field(None, description="Mineral/prototype tag to pick among polymorphs.")
    species: dict[str, str] = Field(description="Replacement map, e.g. {'Na': 'Mg', 'Cl': 'O'}.")


class SeedsConfig(Strict):
    sources: list[SeedSource] = Field(default_factory=lambda: [SeedSource(kind="builtin")])
    known_phases: list[Decoration] = Field(default_factory=list,
                                           description="Extra known phases made by decorating templates.")
    max_sites: int = Field(24, ge=1, description="Seeds with more sites are ignored.")
    exclude: list[SeedSource] = Field(
        default_factory=list, description="Structures kept away from the campaign (e.g. a rediscovery benchmark's "
        "held-out phases): any seed that StructureMatcher matches to one of them is dropped from the templates "
        "and the known phases. Same source kinds as 'sources' except builtin.")

    @field_validator("exclude")
    @classmethod
    def _exclude_files(cls, v: list[SeedSource]) -> list[SeedSource]:
        if any(s.kind == "builtin" for s in v):
            raise ValueError("seeds.exclude takes structure files (csv, cif_dir, extxyz, materials_project), "
                             "not builtin")
        return v


class MatcherConfig(Strict):
    """pymatgen StructureMatcher tolerances (MatterGen's settings, pymatgen's defaults)."""

    ltol: float = Field(0.2, gt=0)
    stol: float = Field(0.3, gt=0)
    angle_tol: float = Field(5.0, gt=0)


class FilterConfig(Strict):
    min_distance: float = Field(0.5, ge=0.5, description="Hard floor on interatomic distance, Å.")
    covalent_scale: float = Field(0.5, ge=0, le=1.5,
                                  description="Reject pairs closer than scale x (r_cov_i + r_cov_j); 0 disables.")
    volume_per_atom: tuple[float, float] = Field((5.0, 60.0), description="Allowed volume per atom, Å³/atom.")
    density: tuple[float, float] = Field((0.5, 25.0), description="Allowed density, g/cm³.")
    charge_neutrality: bool = True
    dedupe: bool = True
    novelty: bool = True
    matcher: MatcherConfig = MatcherConfig()

    @field_validator("volume_per_atom", "density")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] < v[1]:
            raise ValueError(f"need 0 < low < high, got {v}")
        return v


class RelaxConfig(Strict):
    backend: Literal["mace", "chgnet", "auto"] = "auto"
    mace_model: str = Field("medium-mpa-0", description="MACE foundation model name (downloaded on first "
                            "use and cached) or a path to a local .model file.")
    chgnet_model: Literal["0.3.0", "0.2.0", "r2scan"] = "0.3.0"
    device: Literal["cpu", "cuda", "mps"] = "cpu"
    fmax: float = Field(0.05, gt=0, description="Force convergence, eV/Å.")
    max_steps: int = Field(200, ge=1)
    optimizer: Literal["FIRE", "BFGS", "LBFGS"] = Field("FIRE", description="ASE optimizer.")
    engine: Literal["ase", "batched"] = Field("ase", description="ase: one structure at a time (ASE optimizer on a "
                                              "FrechetCellFilter; any backend). batched: a chunk's structures through "
                                              "one model call per step (TorchSim FIRE on a Fréchet cell filter; "
                                              "backend mace and optimizer FIRE only; set chunk_size to 32-256).")
    max_step: float = Field(0.2, gt=0, description="Largest step of the optimizer, Å.")
    max_volume_ratio: float = Field(2.5, gt=1, description="Cells whose volume grows or shrinks by more "
                                    "than this factor count as exploded.")
    chunk_size: int = Field(6, ge=1, description="Structures per relaxation task.")
    retries: int = Field(1, ge=0, description="Prefect retries of a relaxation task.")
    reuse: bool = Field(True, description="Copy the relaxation of an identical structure (same hash, MLIP and "
                        "settings) that another campaign in the same store already ran, instead of running it "
                        "again; the copy records where it came from and still counts against the budget.")

    @model_validator(mode="after")
    def _batched_needs_mace_fire(self) -> RelaxConfig:
        if self.engine == "batched" and (self.backend != "mace" or self.optimizer != "FIRE"):
            raise ValueError(f"relax.engine 'batched' needs backend 'mace' and optimizer 'FIRE' (got backend "
                             f"{self.backend!r}, optimizer {self.optimizer!r}): TorchSim batches MACE with FIRE only, "
                             "and 'auto' may fall back to CHGNet; allowed engines otherwise: ase")
        return self


class StoreConfig(Strict):
    url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file matloop.db in output_dir.")


class DaskSlurmConfig(Strict):
    """Dask workers as SLURM jobs (dask-jobqueue ``SLURMCluster``) for ``runner.kind: dask-slurm``."""

    cores: int = Field(1, ge=1, description="Cores per worker job.")
    processes: int = Field(1, ge=1, description="Dask worker processes per job.")
    memory: str = Field("4GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$", description="Memory per job, e.g. 4GB.")
    walltime: str = Field("01:00:00", pattern=r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$")
    partition: str | None = Field(None, pattern=r"^[A-Za-z0-9_.@+-]+$")
    account: str | None = Field(None, pattern=r"^[A-Za-z0-9_.@+-]+$")
    job_extra: list[str] = Field(default_factory=list, description="Extra #SBATCH options, e.g. --qos=high.")
    prologue: list[str] = Field(default_factory=list, description="Shell lines before the worker starts, "
                                "e.g. 'module load cuda'.")
    minimum: int = Field(1, ge=0, description="Adaptive scaling: fewest worker jobs.")
    maximum: int = Field(4, ge=1, description="Adaptive scaling: most worker jobs.")
    interface: str | None = Field(None, description="Network interface of the workers, e.g. ib0 (lo: one node).")
    python: str | None = Field(None, description="Python on the compute nodes; default: this interpreter.")
    log_directory: Path | None = Field(None, description="Worker job logs; default: none kept.")


class RunnerConfig(Strict):
    kind: Literal["threads", "processes", "dask-slurm"] = "processes"
    max_workers: int = Field(2, ge=1, description="threads/processes: pool size.")
    dask_slurm: DaskSlurmConfig = DaskSlurmConfig()
    lease_s: float = Field(120.0, ge=2, description="Seconds a campaign's runner lease lasts without a heartbeat "
                           "(renewed every quarter of it): a second runner is refused while it lives and may take "
                           "over once a dead runner's lease has expired.")


class ScheduleConfig(Strict):
    """When the deployed campaign runs (``matloop deploy`` puts this on the ``campaign`` deployment)."""

    cron: str | None = Field(None, description="Cron expression, e.g. '0 2 * * *'; none: keep the "
                             "deployment file's schedule.")
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError(f"cron {value!r} needs 5 fields (minute hour day month weekday)")
        return value


class CampaignConfig(Strict):
    name: str = "campaign"
    seed: int = 0
    rounds: int = Field(3, ge=1, le=1000)
    output_dir: Path = Path("campaigns")
    target: TargetConfig
    seeds: SeedsConfig = SeedsConfig()
    generator: GeneratorConfig = SubstitutionGeneratorConfig()
    filter: FilterConfig = FilterConfig()
    relax: RelaxConfig = RelaxConfig()
    dft: DFTConfig = DFTConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    budget: BudgetConfig = BudgetConfig()
    acquisition: AcquisitionConfig = AcquisitionConfig()
    learn: LearnConfig = LearnConfig()
    lab: LabConfig = LabConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    store: StoreConfig = StoreConfig()
    runner: RunnerConfig = RunnerConfig()
    report: bool = Field(True, description="When the campaign completes, write its report files (report.md, "
                         "candidates.csv with units, hull.png, E_hull histograms, CIFs of the best) to "
                         "<campaign_dir>/report (`matloop report` writes them on demand).")

    def store_url(self) -> str:
        """The store's SQLAlchemy URL (the configured one, or SQLite in ``output_dir``)."""
        if self.store.url:
            return self.store.url
        return f"sqlite:///{(self.output_dir / 'matloop.db').resolve()}"
