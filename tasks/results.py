"""Typed results that cross step boundaries. Units are given in each field's description."""

from __future__ import annotations

import hashlib
import time
from typing import Any, Literal, NamedTuple

from pydantic import Field

from conf.base import Strict
from conf.schema import TargetRange


class _Result(Strict):
    """A step result: typed, immutable, unknown keys refused."""


class Conditions(_Result):
    """The generator-facing view of the campaign targets for one round."""

    round_index: int = Field(description="Round these conditions are for (0-based).")
    chemical_system: list[str] = Field(description="Allowed elements.")
    oxidation_states: dict[str, int] = Field(description="Oxidation state per element (charge balance).")
    include_subsystems: bool = Field(description="Whether binary/unary sub-systems may be proposed.")
    max_atoms: int = Field(description="Most sites per cell.")
    property_targets: dict[str, TargetRange] = Field(default_factory=dict,
                                                     description="Targets; energies eV/atom, gaps eV.")
    guidance_scale: float | None = Field(None, description="Classifier-free guidance scale (conditional models).")

    def digest(self) -> str:
        """Stable 12-hex hash of these conditions."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


CheckName = Literal["parse", "elements", "max_atoms", "min_distance", "covalent_distance", "volume",
                    "density", "charge_neutrality", "novelty", "duplicate"]


class Rejection(_Result):
    check: CheckName = Field(description="Which check failed.")
    detail: str = Field(description="Human-readable reason with the measured value.")


class FilterVerdict(_Result):
    """The validity filter's decision on one candidate."""

    hash: str
    passed: bool
    rejections: list[Rejection] = Field(default_factory=list)
    matched_hash: str | None = Field(None, description="Seed or candidate hash it duplicates, if any.")


RelaxStatus = Literal["converged", "not_converged", "exploded", "nan", "error"]


class RelaxResult(_Result):
    """Outcome of one MLIP relaxation."""

    hash: str = Field(description="Hash of the input structure.")
    status: RelaxStatus
    reason: str = Field("", description="Why it failed (empty when converged).")
    energy: float | None = Field(None, description="Final total energy, eV.")
    energy_per_atom: float | None = Field(None, description="Final energy per atom, eV/atom.")
    max_force: float | None = Field(None, description="Largest residual atomic force, eV/Å.")
    n_steps: int = Field(0, description="Optimizer steps taken.")
    volume_ratio: float | None = Field(None, description="Final / initial cell volume.")
    final_structure: str | None = Field(None, description="Relaxed structure as pymatgen JSON.")
    mlip: str = Field(description="Identity of the MLIP model used.")
    settings_hash: str = Field(description="Hash of the relaxation settings.")
    wall_time_s: float = Field(description="Wall time of the relaxation, s.")
    attempt: int = Field(0, description="0: the campaign's own relaxation; n: the n-th rerun with fallback settings.")
    worker: dict[str, Any] = Field(default_factory=dict, description="Where it ran: host, pid, SLURM job id.")


class Evaluation(_Result):
    """Computed properties of one relaxed candidate against the current hull."""

    hash: str
    formula: str
    energy_per_atom: float = Field(description="MLIP energy, eV/atom.")
    formation_energy_per_atom: float = Field(description="Against MLIP elemental references, eV/atom.")
    e_above_hull: float = Field(description="Energy above the campaign's hull, eV/atom: the self-consistent hull, "
                                "or the configured reference hull (then negative below it).")
    stable: bool = Field(description="e_above_hull <= the stability threshold.")
    meets_targets: bool = Field(description="All property targets satisfied.")
    relaxed_match: str = Field("", description="Known phase id or earlier candidate hash that the relaxed "
                               "structure matches ('' when it is new).")


class ArmStat(_Result):
    n: int = Field(description="Scored observations of this arm so far (rejections and failures score 0).")
    mean_score: float | None = Field(None, description="Mean score, dimensionless in [0, 1] (None: nothing "
                                     "scored yet).")
    best_e_hull: float | None = Field(None, description="Lowest E_hull reached by the arm, eV/atom "
                                      "(None when every relaxation failed).")


class RoundFeedback(_Result):
    """What the next round's generator learns from this one."""

    round_index: int
    arm_weights: dict[str, float] = Field(default_factory=dict,
                                          description="Sampling weight per arm (template or composition).")
    prior_weight: float = Field(1.0, description="Weight of an arm not yet tried: the campaign's mean score "
                                "(1 before any observation and with learning off).")
    arm_stats: dict[str, ArmStat] = Field(default_factory=dict)
    proposed_keys: list[str] = Field(default_factory=list, description="Proposal keys already tried.")
    n_evaluated: int = 0
    n_stable: int = 0
    best_e_hull: float | None = Field(None, description="Lowest E_hull in the campaign so far, eV/atom.")
    lab_measurements_used: list[int] = Field(default_factory=list, description="Ids of the lab measurements "
                                             "this feedback has taken into account.")


class PropertyValue(NamedTuple):
    """One stored property of a candidate: ``value`` in ``unit`` (eV/atom, eV, ...) from ``source`` (mlip, dft,
    lab, predictor)."""

    hash: str
    name: str
    value: float
    unit: str
    source: str
    uncertainty: float | None = None  # 1 sigma in ``unit`` (the predictor's); None where unknown


class TaskRecord(_Result):
    """What one task body of a round step did: when it ran and what it computed (its summary is in the store)."""

    start: float = Field(description="When the task body started, epoch seconds.")
    end: float = Field(description="When it ended, epoch seconds.")
    compute_s: float = Field(description="Compute time, s: the body's wall time, or the model's own time where a "
                                         "task tells it apart from store I/O (relaxation, generation).")

    @classmethod
    def since(cls, start: float, compute_s: float | None = None, **fields: Any) -> TaskRecord:
        """The run of a body that started at ``start`` and ends now (``compute_s`` default: its wall time)."""
        end = time.time()
        return cls(start=start, end=end, compute_s=end - start if compute_s is None else compute_s, **fields)


class WarmUpRecord(TaskRecord):
    """A worker's model load ahead of the first relaxation, and when the worker process started."""

    process_start: float = Field(description="When the worker process started, epoch seconds: from then to "
                                             "``start`` it spawned and imported the stack.")


class RelaxChunkRecord(TaskRecord):
    """One relaxation chunk: what it relaxed, copied from another campaign, or found done already."""

    kind: Literal["candidate", "reference"] = Field(description="Candidates or the campaign's known phases.")
    relaxed: int = Field(description="Structures relaxed by this chunk.")
    reused: int = Field(description="Relaxations copied from another campaign of the store (relax.reuse).")
    skipped: int = Field(description="Structures the store held already for this MLIP and settings.")
    converged: int = Field(description="Relaxed or reused structures that converged.")
