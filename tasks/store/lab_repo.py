"""Lab measurements (mixed into :class:`tasks.store.Store`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from tasks.store.engine import insert_ignore, transaction, upsert
from tasks.store.tables import CandidateRow, LabMeasurementRow, PropertyRow, RelaxationRow


class LabRepo:
    url: str

    def lab_candidates(self, cid: str) -> list[dict[str, Any]]:
        """Candidates of the campaign with their generated and (first converged) relaxed structure."""
        with transaction(self.url) as s:
            rows = s.execute(select(CandidateRow.id, CandidateRow.hash, CandidateRow.formula, CandidateRow.structure)
                             .where(CandidateRow.campaign_id == cid)).all()
            relaxed = dict(s.execute(select(RelaxationRow.candidate_id, RelaxationRow.final_structure).join(
                CandidateRow).where(CandidateRow.campaign_id == cid, RelaxationRow.status == "converged")).all())
        return [dict(id=i, hash=h, formula=f, structure=js, relaxed=relaxed.get(i)) for i, h, f, js in rows]

    def save_lab(self, cid: str, items: Sequence[tuple[int, Any, str]], source_file: str) -> int:
        """Store ``(line, LabRecord, candidate hash)`` items (idempotent) and refresh the candidates' 'lab'
        properties (mean of their measurements), in one transaction. Returns how many rows were new."""
        if not items:
            return 0
        with transaction(self.url) as s:
            ids = dict(s.execute(select(CandidateRow.hash, CandidateRow.id).where(
                CandidateRow.campaign_id == cid, CandidateRow.hash.in_({h for _, _, h in items}))).all())
            count = select(func.count()).select_from(LabMeasurementRow).where(LabMeasurementRow.campaign_id == cid)
            before = s.scalar(count)
            insert_ignore(s, LabMeasurementRow, [dict(
                campaign_id=cid, candidate_id=ids[h], property=rec.property, value=rec.value, unit=rec.unit,
                raw_value=rec.raw_value, raw_unit=rec.raw_unit, uncertainty=rec.uncertainty, sample_id=rec.sample_id,
                measured_on=rec.date.isoformat(), notes=rec.notes, source_file=source_file, source_line=line,
                row_hash=rec.key()) for line, rec, h in items], ["campaign_id", "row_hash"])
            written = s.scalar(count) - before
            touched = {(ids[h], rec.property) for _, rec, h in items}
            means = s.execute(select(LabMeasurementRow.candidate_id, LabMeasurementRow.property,
                                     func.avg(LabMeasurementRow.value), func.min(LabMeasurementRow.unit))
                              .where(LabMeasurementRow.campaign_id == cid)
                              .group_by(LabMeasurementRow.candidate_id, LabMeasurementRow.property)).all()
            rounds = dict(s.execute(select(CandidateRow.id, CandidateRow.round_index).where(
                CandidateRow.id.in_(list(ids.values())))).all())
            upsert(s, PropertyRow, [dict(candidate_id=c, name=p, value=float(v), unit=u, source="lab", model="lab",
                                         round_index=rounds[c]) for c, p, v, u in means if (c, p) in touched],
                   ["candidate_id", "name", "source", "model"], ["value"])
        return written

    def lab_measurements(self, cid: str) -> list[tuple[int, str, str, float]]:
        """``(measurement id, candidate hash, property, value in canonical unit)`` of the campaign."""
        with transaction(self.url) as s:
            return [tuple(r) for r in s.execute(select(LabMeasurementRow.id, CandidateRow.hash,
                                                       LabMeasurementRow.property, LabMeasurementRow.value)
                                                .join(CandidateRow).where(LabMeasurementRow.campaign_id == cid)
                                                .order_by(LabMeasurementRow.id)).all()]


def lab_means(measurements: Sequence[tuple[int, str, str, float]]) -> dict[str, dict[str, float]]:
    """Candidate hash -> property -> mean measured value."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _, h, prop, v in measurements:
        acc[h][prop].append(v)
    return {h: {p: sum(v) / len(v) for p, v in props.items()} for h, props in acc.items()}
