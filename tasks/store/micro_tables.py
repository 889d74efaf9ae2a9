"""Tables of microstructure campaigns (``matloop micro run``, migration 0006), on the campaign store's Base: a
campaign, its rounds, and one row per process condition a round asked the generator for."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tasks.store.tables import Base, utcnow


class MicroCampaignRow(Base):
    """A microstructure campaign (``matloop micro run``): its config, the generator it samples (checkpoint hash)."""

    __tablename__ = "micro_campaigns"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))  # created | running | completed | failed
    config: Mapped[dict[str, Any]]
    generator_hash: Mapped[str] = mapped_column(String(64))
    campaign_dir: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class MicroRoundRow(Base):
    __tablename__ = "micro_rounds"
    __table_args__ = (UniqueConstraint("campaign_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("micro_campaigns.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # tasks.store.micro_repo.MICRO_ROUND_STATES
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class MicroEvaluationRow(Base):
    """One process condition a round asked the generator for: why it was chosen, its images (an .npz under the
    campaign folder), their validity and property values, and the condition's mean property."""

    __tablename__ = "micro_evaluations"
    __table_args__ = (UniqueConstraint("campaign_id", "round_index", "slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("micro_campaigns.id", ondelete="CASCADE"), index=True)
    round_index: Mapped[int] = mapped_column(Integer)
    slot: Mapped[int] = mapped_column(Integer)  # position in the round's batch
    conditions: Mapped[dict[str, Any]]  # process condition -> value
    source: Mapped[str] = mapped_column(String(20))  # initial | band | random
    predicted: Mapped[float | None] = mapped_column(Float)  # surrogate mean of the property when chosen
    sigma: Mapped[float | None] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)  # acquisition value (P(in band))
    status: Mapped[str] = mapped_column(String(20))  # proposed | generated | checked | evaluated | failed
    images_path: Mapped[str | None] = mapped_column(Text)
    valid: Mapped[list[Any] | None]  # per image: True, or why not
    volume_fractions: Mapped[list[Any] | None]
    values: Mapped[list[Any] | None]  # per valid image: the property (None where not computed)
    mean: Mapped[float | None] = mapped_column(Float)  # over valid images, the property's units
    std: Mapped[float | None] = mapped_column(Float)
    in_band: Mapped[bool | None] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
