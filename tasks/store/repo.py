"""Repository functions: the only code that writes the campaign store.

Every method runs in its own transaction; a step's results and its round's state change are written
together, so a crash leaves either the whole step or nothing. Writes are idempotent on
(campaign, structure hash) and on each table's unique key.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from conf.schema import CampaignConfig
from tasks.candidate import Candidate, Provenance, structure_from_json, structure_hash, structure_to_json
from tasks.errors import StoreError
from tasks.results import Conditions, FilterVerdict, RoundFeedback
from tasks.seeds import Seed, SeedSet
from tasks.store.engine import insert_ignore, transaction
from tasks.store.secrets import without_password
from tasks.store.tables import CampaignRow, CandidateRow, ProposalRow, RoundRow, SeedRow, VerdictRow

ROUND_STATES = ("pending", "generated", "filtered", "acquired", "relaxed", "evaluated", "dft", "learned",
                "completed")


def round_reached(status: str, state: str) -> bool:
    """Whether a round in ``status`` has completed step ``state`` (one of :data:`ROUND_STATES`)."""
    if state not in ROUND_STATES or status not in ROUND_STATES:
        raise StoreError(f"unknown round state {state!r}/{status!r}; allowed: {', '.join(ROUND_STATES)}")
    return ROUND_STATES.index(status) >= ROUND_STATES.index(state)


class CampaignRepo:
    """Campaigns, rounds, seeds, proposals and verdicts (mixed into :class:`tasks.store.Store`)."""

    url: str

    # ---- campaigns -------------------------------------------------------------------------------------
    def create_campaign(self, cfg: CampaignConfig, seeds: SeedSet) -> str:
        """Write the campaign, its rounds and its seeds in one transaction; returns the campaign id."""
        cid = uuid.uuid4().hex[:10]
        config = cfg.model_dump(mode="json")
        if config["store"]["url"]:  # a password is never persisted (tasks/store/secrets.py)
            config["store"]["url"] = without_password(config["store"]["url"])
        chash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        cdir = (Path(cfg.output_dir) / cid).resolve()
        known = {s.id for s in seeds.known_phases}
        rows = [_seed_row(cid, s, known_phase=s.id in known, template=True) for s in seeds.templates]
        rows += [_seed_row(cid, s, known_phase=True, template=False)
                 for s in seeds.known_phases if s.id not in {t.id for t in seeds.templates}]
        with transaction(self.url) as s:
            s.add(CampaignRow(id=cid, name=cfg.name, status="created", config=config, config_hash=chash,
                              campaign_dir=str(cdir)))
            s.flush()
            s.add_all(RoundRow(campaign_id=cid, index=i, status="pending", summary={}) for i in range(cfg.rounds))
            insert_ignore(s, SeedRow, rows, ["campaign_id", "seed_id"])
        return cid

    def campaign(self, cid: str) -> CampaignRow:
        with transaction(self.url) as s:
            row = s.get(CampaignRow, cid)
            if row is None:
                known = ", ".join(r.id for r in s.scalars(select(CampaignRow).order_by(CampaignRow.created_at)))
                raise StoreError(f"unknown campaign {cid!r} in {self.url} (known: {known or 'none'})")
            return row

    def campaigns(self) -> list[CampaignRow]:
        with transaction(self.url) as s:
            return list(s.scalars(select(CampaignRow).order_by(CampaignRow.created_at)))

    def config(self, cid: str) -> CampaignConfig:
        return CampaignConfig.model_validate(self.campaign(cid).config)

    def set_campaign(self, cid: str, **values: Any) -> None:
        """Update campaign columns (status, mlip, mlip_spec)."""
        with transaction(self.url) as s:
            s.execute(update(CampaignRow).where(CampaignRow.id == cid).values(**values))

    def extend_rounds(self, cid: str, rounds: int) -> None:
        """Make sure rounds ``0..rounds-1`` exist (resuming with more rounds)."""
        with transaction(self.url) as s:
            have = set(s.scalars(select(RoundRow.index).where(RoundRow.campaign_id == cid)))
            s.add_all(RoundRow(campaign_id=cid, index=i, status="pending", summary={})
                      for i in range(rounds) if i not in have)

    def seed_set(self, cid: str) -> SeedSet:
        with transaction(self.url) as s:
            rows = list(s.scalars(select(SeedRow).where(SeedRow.campaign_id == cid).order_by(SeedRow.id)))
        seeds = [(r, Seed(id=r.seed_id, structure=structure_from_json(r.structure), source=r.source,
                          label=r.label, relax_cell=r.relax_cell)) for r in rows]
        return SeedSet(known_phases=[x for r, x in seeds if r.known_phase],
                       templates=[x for r, x in seeds if r.template])

    # ---- rounds ----------------------------------------------------------------------------------------
    def rounds(self, cid: str) -> list[RoundRow]:
        with transaction(self.url) as s:
            return list(s.scalars(select(RoundRow).where(RoundRow.campaign_id == cid).order_by(RoundRow.index)))

    def round(self, cid: str, r: int) -> RoundRow:
        with transaction(self.url) as s:
            row = s.scalar(select(RoundRow).where(RoundRow.campaign_id == cid, RoundRow.index == r))
        if row is None:
            raise StoreError(f"campaign {cid} has no round {r}")
        return row

    def advance_round(self, cid: str, r: int, status: str, summary: dict[str, Any] | None = None,
                      feedback: RoundFeedback | None = None) -> None:
        """Set a round's status, merging ``summary`` into its summary (and storing feedback)."""
        round_reached(status, "pending")  # validates the name
        with transaction(self.url) as s:
            self._advance(s, cid, r, status, summary, feedback)

    @staticmethod
    def _advance(s, cid: str, r: int, status: str, summary: dict[str, Any] | None,
                 feedback: RoundFeedback | None = None, conditions: Conditions | None = None) -> None:
        row = s.scalar(select(RoundRow).where(RoundRow.campaign_id == cid, RoundRow.index == r))
        if row is None:
            raise StoreError(f"campaign {cid} has no round {r}")
        row.status = status
        row.summary = {**(row.summary or {}), **(summary or {})}
        if feedback is not None:
            row.feedback = feedback.model_dump(mode="json")
        if conditions is not None:
            row.conditions = conditions.model_dump(mode="json")

    def feedback_before(self, cid: str, r: int) -> RoundFeedback | None:
        """Feedback of the latest completed round before ``r``."""
        with transaction(self.url) as s:
            row = s.scalar(select(RoundRow).where(RoundRow.campaign_id == cid, RoundRow.index < r,
                                                  RoundRow.feedback.is_not(None)).order_by(RoundRow.index.desc()))
            return RoundFeedback.model_validate(row.feedback) if row is not None else None

    # ---- generation ------------------------------------------------------------------------------------
    def save_proposals(self, cid: str, r: int, candidates: Sequence[Candidate], conditions: Conditions,
                       summary: dict[str, Any]) -> None:
        """Store a round's generated batch (candidates once per hash, every proposal in order)."""
        rows = [dict(campaign_id=cid, hash=c.hash, round_index=r, formula=c.formula, nsites=len(c.structure),
                     structure=structure_to_json(c.structure), generator=c.provenance.generator,
                     provenance=c.provenance.model_dump(mode="json"), status="generated") for c in candidates]
        with transaction(self.url) as s:
            insert_ignore(s, CandidateRow, rows, ["campaign_id", "hash"])
            ids = dict(s.execute(select(CandidateRow.hash, CandidateRow.id).where(
                CandidateRow.campaign_id == cid, CandidateRow.hash.in_([c.hash for c in candidates]))).all())
            insert_ignore(s, ProposalRow, [dict(campaign_id=cid, round_index=r, position=i, candidate_id=ids[c.hash],
                                                key=c.provenance.key) for i, c in enumerate(candidates)],
                          ["campaign_id", "round_index", "position"])
            self._advance(s, cid, r, "generated", summary, conditions=conditions)

    def proposals(self, cid: str, r: int) -> list[tuple[int, int, Candidate]]:
        """``(proposal id, first round of the structure, candidate)`` for round ``r``, in order."""
        with transaction(self.url) as s:
            rows = s.execute(select(ProposalRow.id, CandidateRow).join(CandidateRow).where(
                ProposalRow.campaign_id == cid, ProposalRow.round_index == r).order_by(ProposalRow.position)).all()
        return [(pid, c.round_index, candidate_from_row(c)) for pid, c in rows]

    def structures_before(self, cid: str, r: int, formulas: Sequence[str] | None = None) -> list[tuple[str, Any]]:
        """``(hash, Structure)`` of every candidate first proposed before round ``r`` (only those of the reduced
        ``formulas`` when given: a structure can only match one of its own formula)."""
        where = [CandidateRow.campaign_id == cid, CandidateRow.round_index < r]
        where += [CandidateRow.formula.in_(sorted(set(formulas)))] if formulas is not None else []
        with transaction(self.url) as s:
            rows = s.execute(select(CandidateRow.hash, CandidateRow.structure).where(*where)).all()
        return [(h, structure_from_json(js)) for h, js in rows]

    def proposal_keys(self, cid: str) -> list[str]:
        with transaction(self.url) as s:
            return sorted(set(s.scalars(select(ProposalRow.key).where(ProposalRow.campaign_id == cid))))

    # ---- filter ----------------------------------------------------------------------------------------
    def save_verdicts(self, cid: str, r: int, verdicts: Sequence[tuple[int, FilterVerdict]],
                      summary: dict[str, Any]) -> None:
        with transaction(self.url) as s:
            insert_ignore(s, VerdictRow, [dict(proposal_id=pid, campaign_id=cid, passed=v.passed,
                                               rejections=[x.model_dump() for x in v.rejections],
                                               matched_hash=v.matched_hash) for pid, v in verdicts],
                          ["proposal_id"])
            for passed in (True, False):
                hashes = [v.hash for _, v in verdicts if v.passed is passed]
                s.execute(update(CandidateRow).where(CandidateRow.campaign_id == cid, CandidateRow.hash.in_(hashes),
                                                     CandidateRow.status == "generated")
                          .values(status="accepted" if passed else "rejected"))
            self._advance(s, cid, r, "filtered", summary)

    def rejected_arms(self, cid: str) -> list[tuple[str, int]]:
        """``(arm, round)`` of every proposal of the campaign the filter rejected (feedback scores them 0)."""
        with transaction(self.url) as s:
            rows = s.execute(select(CandidateRow.provenance, ProposalRow.round_index).join(
                ProposalRow, ProposalRow.candidate_id == CandidateRow.id).join(
                VerdictRow, VerdictRow.proposal_id == ProposalRow.id).where(
                ProposalRow.campaign_id == cid, VerdictRow.passed.is_(False)).order_by(ProposalRow.id)).all()
        return [(prov["arm"], r) for prov, r in rows]

    def accepted(self, cid: str, r: int) -> list[Candidate]:
        """Candidates of round ``r`` that passed the filter, ordered by hash."""
        with transaction(self.url) as s:
            rows = s.scalars(select(CandidateRow).join(ProposalRow).join(
                VerdictRow, VerdictRow.proposal_id == ProposalRow.id).where(
                ProposalRow.campaign_id == cid, ProposalRow.round_index == r, VerdictRow.passed.is_(True))
                .order_by(CandidateRow.hash)).unique().all()
        return [candidate_from_row(c) for c in rows]

def _seed_row(cid: str, seed: Seed, known_phase: bool, template: bool) -> dict[str, Any]:
    return dict(campaign_id=cid, seed_id=seed.id, hash=structure_hash(seed.structure), formula=seed.formula,
                structure=structure_to_json(seed.structure), source=seed.source, label=seed.label,
                relax_cell=seed.relax_cell, known_phase=known_phase, template=template)


def candidate_from_row(row: CandidateRow) -> Candidate:
    return Candidate(structure=structure_from_json(row.structure), hash=row.hash,
                     provenance=Provenance.model_validate(row.provenance))
