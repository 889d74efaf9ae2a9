"""Microstructure campaigns in the store (mixed into :class:`tasks.store.Store`): the only writer of
micro_campaigns, micro_rounds and micro_evaluations. A step's results and its round's state change are one
transaction, so a killed campaign resumes at the step it was in."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from tasks.errors import StoreError
from tasks.store.engine import transaction
from tasks.store.micro_tables import MicroCampaignRow, MicroEvaluationRow, MicroRoundRow
from tasks.store.secrets import without_password

MICRO_ROUND_STATES = ("pending", "proposed", "generated", "checked", "evaluated", "completed")
EVALUATION_STATES = ("proposed", "generated", "checked", "evaluated", "failed")


def micro_round_reached(status: str, state: str) -> bool:
    """Whether a micro round in ``status`` has completed step ``state`` (one of :data:`MICRO_ROUND_STATES`)."""
    if state not in MICRO_ROUND_STATES or status not in MICRO_ROUND_STATES:
        raise StoreError(f"unknown micro round state {state!r}/{status!r}; allowed: {', '.join(MICRO_ROUND_STATES)}")
    return MICRO_ROUND_STATES.index(status) >= MICRO_ROUND_STATES.index(state)


class MicroRepo:
    url: str

    def create_micro_campaign(self, config: dict[str, Any], generator_hash: str, output_dir: Path,
                              rounds: int) -> str:
        cid = uuid.uuid4().hex[:10]
        config = dict(config)
        if config.get("store_url"):  # a password is never persisted (tasks/store/secrets.py)
            config["store_url"] = without_password(config["store_url"])
        with transaction(self.url) as s:
            s.add(MicroCampaignRow(id=cid, name=config["name"], status="created", config=config,
                                   generator_hash=generator_hash, campaign_dir=str((Path(output_dir) / cid).resolve())))
            s.flush()
            s.add_all(MicroRoundRow(campaign_id=cid, index=r, status="pending", summary={}) for r in range(rounds))
        return cid

    def micro_campaign(self, cid: str) -> MicroCampaignRow:
        with transaction(self.url) as s:
            row = s.get(MicroCampaignRow, cid)
            if row is None:
                raise StoreError(f"no microstructure campaign {cid!r} in this store")
            s.expunge(row)
            return row

    def micro_campaigns(self) -> list[MicroCampaignRow]:
        with transaction(self.url) as s:
            rows = list(s.scalars(select(MicroCampaignRow).order_by(MicroCampaignRow.created_at)))
            s.expunge_all()
            return rows

    def set_micro_campaign(self, cid: str, status: str) -> None:
        with transaction(self.url) as s:
            s.execute(update(MicroCampaignRow).where(MicroCampaignRow.id == cid).values(status=status))

    def micro_rounds(self, cid: str) -> list[MicroRoundRow]:
        with transaction(self.url) as s:
            rows = list(s.scalars(select(MicroRoundRow).where(MicroRoundRow.campaign_id == cid)
                                  .order_by(MicroRoundRow.index)))
            s.expunge_all()
            return rows

    def micro_round(self, cid: str, index: int) -> MicroRoundRow:
        with transaction(self.url) as s:
            row = s.scalars(select(MicroRoundRow).where(MicroRoundRow.campaign_id == cid,
                                                        MicroRoundRow.index == index)).first()
            if row is None:
                raise StoreError(f"microstructure campaign {cid!r} has no round {index}")
            s.expunge(row)
            return row

    def micro_evaluations(self, cid: str, round_index: int | None = None,
                          status: str | None = None) -> list[MicroEvaluationRow]:
        """Evaluations of a campaign (of one round, of one status), in round and slot order."""
        if status is not None and status not in EVALUATION_STATES:
            raise StoreError(f"unknown evaluation status {status!r}; allowed: {', '.join(EVALUATION_STATES)}")
        query = select(MicroEvaluationRow).where(MicroEvaluationRow.campaign_id == cid)
        if round_index is not None:
            query = query.where(MicroEvaluationRow.round_index == round_index)
        if status is not None:
            query = query.where(MicroEvaluationRow.status == status)
        with transaction(self.url) as s:
            rows = list(s.scalars(query.order_by(MicroEvaluationRow.round_index, MicroEvaluationRow.slot)))
            s.expunge_all()
            return rows

    def write_micro_step(self, cid: str, round_index: int, state: str, rows: list[dict[str, Any]] = (),
                         new: list[dict[str, Any]] = (), summary: dict[str, Any] | None = None) -> None:
        """One step's results and the round's new ``state``, in one transaction: ``new`` evaluation rows are
        added, ``rows`` update existing ones (each names its ``slot``); ``summary`` is merged into the round's."""
        if state not in MICRO_ROUND_STATES:
            raise StoreError(f"unknown micro round state {state!r}; allowed: {', '.join(MICRO_ROUND_STATES)}")
        with transaction(self.url) as s:
            for values in new:
                s.add(MicroEvaluationRow(campaign_id=cid, round_index=round_index, attempts=0, **values))
            for values in rows:
                values = dict(values)
                slot = values.pop("slot")
                s.execute(update(MicroEvaluationRow).where(
                    MicroEvaluationRow.campaign_id == cid, MicroEvaluationRow.round_index == round_index,
                    MicroEvaluationRow.slot == slot).values(**values))
            rnd = s.scalars(select(MicroRoundRow).where(MicroRoundRow.campaign_id == cid,
                                                        MicroRoundRow.index == round_index)).one()
            rnd.status = state
            if summary:
                rnd.summary = {**(rnd.summary or {}), **summary}

    def update_micro_evaluation(self, cid: str, round_index: int, slot: int, **values: Any) -> None:
        """Outside a round's steps (``matloop micro rerun-failed``): one evaluation's new values."""
        with transaction(self.url) as s:
            s.execute(update(MicroEvaluationRow).where(
                MicroEvaluationRow.campaign_id == cid, MicroEvaluationRow.round_index == round_index,
                MicroEvaluationRow.slot == slot).values(**values))
