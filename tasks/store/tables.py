"""SQLAlchemy 2 tables of the campaign store.

One campaign has rounds; every generated structure is a *proposal* of a round; a proposal points at a
*candidate* (unique per campaign and structure hash, so a structure proposed twice is stored once); every
proposal gets a filter *verdict*; accepted candidates get *relaxations* (one per settings hash) and
*properties* (one per name, source and model). Known phases are *seeds* of the campaign; their MLIP energies
are cached across campaigns in *reference_energies*, keyed by model identity and structure hash.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    # JSON null stays SQL NULL, so `IS NULL` filters work the same on SQLite and PostgreSQL
    type_annotation_map = {dict[str, Any]: JSON(none_as_null=True), list[Any]: JSON(none_as_null=True)}


class CampaignRow(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))  # created | running | completed | failed
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str] = mapped_column(String(16))
    mlip: Mapped[str | None] = mapped_column(String(300))  # resolved MLIP identity
    mlip_spec: Mapped[dict[str, Any] | None]  # what relax workers load
    campaign_dir: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class RoundRow(Base):
    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("campaign_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    # pending | generated | filtered | acquired | relaxed | evaluated | dft | completed
    status: Mapped[str] = mapped_column(String(20), default="pending")
    conditions: Mapped[dict[str, Any] | None]
    feedback: Mapped[dict[str, Any] | None]
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class SeedRow(Base):
    __tablename__ = "seeds"
    __table_args__ = (UniqueConstraint("campaign_id", "seed_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    seed_id: Mapped[str] = mapped_column(String(200))
    hash: Mapped[str] = mapped_column(String(16))
    formula: Mapped[str] = mapped_column(String(100), index=True)
    structure: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(200), default="")
    relax_cell: Mapped[bool] = mapped_column(Boolean, default=True)
    known_phase: Mapped[bool] = mapped_column(Boolean, default=False)
    template: Mapped[bool] = mapped_column(Boolean, default=False)


class CandidateRow(Base):
    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("campaign_id", "hash"),
                      # the read commands at scale (migration 0005): counts by status, ranking without structures
                      Index("ix_candidates_campaign_status", "campaign_id", "status"),
                      Index("ix_candidates_campaign_match", "campaign_id", "relaxed_match", "formula", "round_index",
                            "hash"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    hash: Mapped[str] = mapped_column(String(16))
    round_index: Mapped[int] = mapped_column(Integer)  # first round that proposed it
    formula: Mapped[str] = mapped_column(String(100), index=True)
    nsites: Mapped[int] = mapped_column(Integer)
    structure: Mapped[str] = mapped_column(Text)
    generator: Mapped[str] = mapped_column(String(40))
    provenance: Mapped[dict[str, Any]]
    # generated | rejected | accepted | relaxed | relax_failed
    status: Mapped[str] = mapped_column(String(20), default="generated")
    # after relaxation: "" when unique, else the known phase (seed id) or earlier candidate (hash) it became
    relaxed_match: Mapped[str | None] = mapped_column(String(200))


class ProposalRow(Base):
    __tablename__ = "proposals"
    __table_args__ = (UniqueConstraint("campaign_id", "round_index", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    round_index: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(300))


class VerdictRow(Base):
    __tablename__ = "verdicts"

    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id", ondelete="CASCADE"), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    rejections: Mapped[list[Any]]  # [{"check": ..., "detail": ...}]
    matched_hash: Mapped[str | None] = mapped_column(String(200))


class RelaxationRow(Base):
    __tablename__ = "relaxations"
    __table_args__ = (UniqueConstraint("candidate_id", "settings_hash", "mlip"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # converged | not_converged | exploded | nan | error
    reason: Mapped[str] = mapped_column(Text, default="")
    mlip: Mapped[str] = mapped_column(String(300))
    settings_hash: Mapped[str] = mapped_column(String(16))
    energy: Mapped[float | None] = mapped_column(Float)  # eV
    energy_per_atom: Mapped[float | None] = mapped_column(Float)  # eV/atom
    max_force: Mapped[float | None] = mapped_column(Float)  # eV/Å
    n_steps: Mapped[int] = mapped_column(Integer)
    volume_ratio: Mapped[float | None] = mapped_column(Float)
    final_structure: Mapped[str | None] = mapped_column(Text)
    wall_time_s: Mapped[float] = mapped_column(Float)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # 0: campaign settings; n: n-th rerun (fallback)
    worker: Mapped[dict[str, Any] | None]  # host, pid, slurm_job_id of the process that ran it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PropertyRow(Base):
    __tablename__ = "properties"
    __table_args__ = (UniqueConstraint("candidate_id", "name", "source", "model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))  # mlip | dft | lab | predictor
    model: Mapped[str] = mapped_column(String(300))
    uncertainty: Mapped[float | None] = mapped_column(Float, nullable=True)  # 1 sigma, same unit; null if unknown
    round_index: Mapped[int] = mapped_column(Integer)  # round whose evaluation wrote it
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ReferenceEnergyRow(Base):
    __tablename__ = "reference_energies"
    __table_args__ = (UniqueConstraint("mlip", "settings_hash", "hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mlip: Mapped[str] = mapped_column(String(300))
    settings_hash: Mapped[str] = mapped_column(String(16))
    hash: Mapped[str] = mapped_column(String(16))
    formula: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    energy_per_atom: Mapped[float | None] = mapped_column(Float)  # eV/atom
    final_structure: Mapped[str | None] = mapped_column(Text)


class DFTCalcRow(Base):
    """One DFT calculation and its state: queued -> submitted -> running -> completed | failed | lost.

    Elemental references are shared by every campaign (``campaign_id`` ""), keyed by element and the hash of
    the settings that change the energy; a rerun keeps the row and appends the earlier attempt to ``history``.
    """

    __tablename__ = "dft_calculations"
    __table_args__ = (UniqueConstraint("campaign_id", "label", "settings_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(32), index=True)  # "" for shared references
    label: Mapped[str] = mapped_column(String(64))  # candidate hash or "element:<El>"
    kind: Mapped[str] = mapped_column(String(12))  # candidate | reference
    round_index: Mapped[int | None] = mapped_column(Integer)
    structure: Mapped[str] = mapped_column(Text)  # input structure, pymatgen JSON
    settings: Mapped[dict[str, Any]]
    settings_hash: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(12))  # local | slurm
    state: Mapped[str] = mapped_column(String(12), default="queued", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    history: Mapped[list[Any]] = mapped_column(default=list)  # earlier attempts: state, reason, job, settings
    job_id: Mapped[str | None] = mapped_column(String(40))  # SLURM job id, or "<host>:<pid>" of a local worker
    calc_dir: Mapped[str] = mapped_column(Text)
    energy: Mapped[float | None] = mapped_column(Float)  # eV
    energy_per_atom: Mapped[float | None] = mapped_column(Float)  # eV/atom
    final_structure: Mapped[str | None] = mapped_column(Text)
    forces: Mapped[list[Any] | None]  # eV/Å
    stress: Mapped[list[Any] | None]  # kbar
    scf_converged: Mapped[bool | None] = mapped_column(Boolean)
    band_gap: Mapped[float | None] = mapped_column(Float)  # eV
    wall_time_s: Mapped[float | None] = mapped_column(Float)
    code_version: Mapped[str] = mapped_column(String(60), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class LabMeasurementRow(Base):
    """One measured property of a candidate from a lab file; ``row_hash`` makes re-ingesting a file a no-op."""

    __tablename__ = "lab_measurements"
    __table_args__ = (UniqueConstraint("campaign_id", "row_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    property: Mapped[str] = mapped_column(String(60))
    value: Mapped[float] = mapped_column(Float)  # in the canonical unit below
    unit: Mapped[str] = mapped_column(String(20))  # canonical unit
    raw_value: Mapped[float] = mapped_column(Float)
    raw_unit: Mapped[str] = mapped_column(String(20))
    uncertainty: Mapped[float | None] = mapped_column(Float)  # canonical unit
    sample_id: Mapped[str] = mapped_column(String(100))
    measured_on: Mapped[str] = mapped_column(String(10))  # ISO date
    notes: Mapped[str] = mapped_column(Text, default="")
    source_file: Mapped[str] = mapped_column(Text)
    source_line: Mapped[int] = mapped_column(Integer)
    row_hash: Mapped[str] = mapped_column(String(24))
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AcquisitionRow(Base):
    """One candidate an acquisition ranked (``stage`` relax: a round's accepted candidates on a predicted MLIP E_hull;
    dft: relaxed candidates on a predicted DFT E_hull): prediction, uncertainty, value and whether it was chosen
    (``rank``: order of choice, None when not chosen)."""

    __tablename__ = "acquisitions"
    __table_args__ = (UniqueConstraint("campaign_id", "stage", "round_index", "candidate_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(10))  # relax | dft
    round_index: Mapped[int] = mapped_column(Integer)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    function: Mapped[str] = mapped_column(String(20))  # greedy | lcb | ei | random
    predicted_e_above_hull: Mapped[float] = mapped_column(Float)  # eV/atom
    sigma: Mapped[float] = mapped_column(Float)  # eV/atom
    value: Mapped[float] = mapped_column(Float)  # acquisition value (higher is chosen first)
    chosen: Mapped[bool] = mapped_column(Boolean)
    rank: Mapped[int | None] = mapped_column(Integer)


class LeaseRow(Base):
    """Who runs a campaign now: one live runner per campaign. ``expires_at`` (unix seconds) moves forward with
    every heartbeat; a runner that died stops renewing it, and once it has expired another may take over."""

    __tablename__ = "campaign_leases"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(300))  # host:pid of the runner
    token: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[float] = mapped_column(Float)

