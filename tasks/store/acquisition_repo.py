"""Acquisition choices (mixed into :class:`tasks.store.Store`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from tasks.store.engine import insert_ignore, transaction
from tasks.store.tables import AcquisitionRow, CandidateRow


class AcquisitionRepo:
    url: str

    def save_acquisition(self, cid: str, r: int, rows: Sequence[dict[str, Any]], summary: dict[str, Any] | None,
                         stage: str = "relax") -> None:
        """Store a round's ranked candidates (dicts with ``hash``, ``function``, ``predicted_e_above_hull``,
        ``sigma``, ``value``, ``chosen``, ``rank``) of ``stage`` (relax | dft) and, for relax, advance the round to
        ``acquired``, in one transaction; idempotent (a resumed round keeps its first choice)."""
        keys = ("function", "predicted_e_above_hull", "sigma", "value", "chosen", "rank")
        with transaction(self.url) as s:
            ids = dict(s.execute(select(CandidateRow.hash, CandidateRow.id).where(
                CandidateRow.campaign_id == cid, CandidateRow.hash.in_([x["hash"] for x in rows]))).all())
            insert_ignore(s, AcquisitionRow, [dict(campaign_id=cid, stage=stage, round_index=r,
                                                   candidate_id=ids[x["hash"]], **{k: x[k] for k in keys})
                                              for x in rows], ["campaign_id", "stage", "round_index", "candidate_id"])
            if stage == "relax":
                self._advance(s, cid, r, "acquired", summary)  # type: ignore[attr-defined]

    def acquisitions(self, cid: str, r: int | None = None, stage: str = "relax") -> list[dict[str, Any]]:
        """Every candidate of the campaign (or of round ``r``) ranked at ``stage`` (relax | dft), chosen ones
        first in order of choice."""
        with transaction(self.url) as s:
            stmt = select(AcquisitionRow, CandidateRow.hash, CandidateRow.formula).join(
                CandidateRow, CandidateRow.id == AcquisitionRow.candidate_id).where(
                AcquisitionRow.campaign_id == cid, AcquisitionRow.stage == stage)
            if r is not None:
                stmt = stmt.where(AcquisitionRow.round_index == r)
            rows = s.execute(stmt).all()
        out = [dict(hash=h, formula=f, round=a.round_index, function=a.function,
                    predicted_e_above_hull=a.predicted_e_above_hull, sigma=a.sigma, value=a.value, chosen=a.chosen,
                    rank=a.rank) for a, h, f in rows]
        return sorted(out, key=lambda x: (x["round"], not x["chosen"], x["rank"] or 0, -x["value"], x["hash"]))

    def chosen(self, cid: str, r: int) -> list[str] | None:
        """Hashes a round's acquisition chose, in order of choice; None when the round ran no acquisition."""
        rows = self.acquisitions(cid, r)
        return [x["hash"] for x in rows if x["chosen"]] if rows else None
