"""Relaxations, reference energies and properties (mixed into :class:`tasks.store.Store`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymatgen.core import Structure
from sqlalchemy import func, select, update

from tasks.candidate import structure_from_json
from tasks.results import Evaluation, PropertyValue, RelaxResult
from tasks.seeds import Seed
from tasks.store.engine import insert_ignore, transaction, upsert
from tasks.store.tables import CandidateRow, PropertyRow, ReferenceEnergyRow, RelaxationRow, SeedRow

PROPERTY_UNITS = {"energy_per_atom": "eV/atom", "formation_energy_per_atom": "eV/atom",
                  "e_above_hull": "eV/atom", "band_gap": "eV"}


def attempt_of(settings_hash: str) -> int:
    """Rerun attempt encoded in a settings hash (``...-rN``); 0 for the campaign's own settings."""
    head, sep, tail = settings_hash.rpartition("-r")
    return int(tail) if sep and tail.isdigit() else 0


class ResultsRepo:
    url: str

    def candidate_structures(self, cid: str, hashes: Sequence[str]) -> dict[str, Structure]:
        with transaction(self.url) as s:
            rows = s.execute(select(CandidateRow.hash, CandidateRow.structure).where(
                CandidateRow.campaign_id == cid, CandidateRow.hash.in_(list(hashes)))).all()
        return {h: structure_from_json(js) for h, js in rows}

    def known_phase_seeds(self, cid: str) -> dict[str, Seed]:
        """Known phases of the campaign keyed by structure hash."""
        with transaction(self.url) as s:
            rows = list(s.scalars(select(SeedRow).where(SeedRow.campaign_id == cid, SeedRow.known_phase.is_(True))))
        return {r.hash: Seed(id=r.seed_id, structure=structure_from_json(r.structure), source=r.source,
                             label=r.label, relax_cell=r.relax_cell) for r in rows}

    # ---- relaxation ------------------------------------------------------------------------------------
    def relaxed_hashes(self, cid: str, hashes: Sequence[str], mlip: str, settings: str) -> set[str]:
        with transaction(self.url) as s:
            return set(s.scalars(select(CandidateRow.hash).join(RelaxationRow).where(
                CandidateRow.campaign_id == cid, CandidateRow.hash.in_(list(hashes)),
                RelaxationRow.mlip == mlip, RelaxationRow.settings_hash == settings)))

    def reusable_relaxations(self, cid: str, hashes: Sequence[str], mlip: str, settings: str) -> list[RelaxResult]:
        """Relaxations that other campaigns of this store ran on structures with these hashes, with the same
        MLIP and settings (their own attempt, not reruns), as results for campaign ``cid``: one per hash, the
        earliest, recording where it came from. A relaxation whose calculator raised (``error``: out of memory,
        a crashed worker) may not happen again and is not reused."""
        with transaction(self.url) as s:
            rows = s.execute(select(CandidateRow.hash, CandidateRow.campaign_id, RelaxationRow).join(RelaxationRow)
                             .where(CandidateRow.campaign_id != cid, CandidateRow.hash.in_(list(hashes)),
                                    RelaxationRow.mlip == mlip, RelaxationRow.settings_hash == settings,
                                    RelaxationRow.attempt == 0, RelaxationRow.status != "error")
                             .order_by(RelaxationRow.id)).all()
        out: dict[str, RelaxResult] = {}
        for h, other, rel in rows:
            if h not in out:
                fields = {k: getattr(rel, k) for k in RelaxResult.model_fields if k not in ("hash", "worker")}
                out[h] = RelaxResult(hash=h, **fields, worker={"reused_from_campaign": other,
                                                               "reused_relaxation_id": rel.id})
        return list(out.values())

    def own_relaxations(self, cid: str, mlip: str, settings: str) -> list[tuple[CandidateRow, RelaxationRow]]:
        """Each candidate's own relaxation (attempt 0, the campaign's MLIP and settings, not a rerun), in
        candidate order: what its relaxation budget paid for."""
        with transaction(self.url) as s:
            return [tuple(r) for r in s.execute(select(CandidateRow, RelaxationRow).join(RelaxationRow).where(
                CandidateRow.campaign_id == cid, RelaxationRow.mlip == mlip, RelaxationRow.settings_hash == settings,
                RelaxationRow.attempt == 0).order_by(CandidateRow.id)).all()]

    def relaxation_count(self, cid: str, before_round: int | None = None) -> int:
        """Candidates (first proposed before ``before_round``, or all) that have a relaxation of their own (any
        status): what the campaign has spent of a relaxation budget."""
        stmt = select(func.count(func.distinct(CandidateRow.id))).join(RelaxationRow).where(
            CandidateRow.campaign_id == cid, RelaxationRow.attempt == 0)
        if before_round is not None:
            stmt = stmt.where(CandidateRow.round_index < before_round)
        with transaction(self.url) as s:
            return s.scalar(stmt) or 0

    def save_relaxations(self, cid: str, results: Sequence[RelaxResult]) -> None:
        if not results:
            return
        with transaction(self.url) as s:
            ids = dict(s.execute(select(CandidateRow.hash, CandidateRow.id).where(
                CandidateRow.campaign_id == cid, CandidateRow.hash.in_([x.hash for x in results]))).all())
            rows = [dict(candidate_id=ids[x.hash], **x.model_dump(exclude={"hash"})) for x in results]
            insert_ignore(s, RelaxationRow, rows, ["candidate_id", "settings_hash", "mlip"])
            for ok in (True, False):
                hashes = [x.hash for x in results if (x.status == "converged") is ok]
                s.execute(update(CandidateRow).where(CandidateRow.campaign_id == cid, CandidateRow.hash.in_(hashes))
                          .values(status="relaxed" if ok else "relax_failed"))

    def relaxations(self, cid: str, mlip: str, settings: str) -> list[tuple[CandidateRow, RelaxationRow]]:
        """The effective relaxation of each relaxed candidate with this MLIP: the one with the campaign's
        ``settings`` if it converged, else the latest converged rerun (``matloop rerun-failed``), else the
        latest attempt."""
        with transaction(self.url) as s:
            rows = s.execute(select(CandidateRow, RelaxationRow).join(RelaxationRow).where(
                CandidateRow.campaign_id == cid, RelaxationRow.mlip == mlip,
                (RelaxationRow.settings_hash == settings) | (RelaxationRow.attempt > 0))
                .order_by(CandidateRow.id, RelaxationRow.attempt)).all()
        chosen: dict[int, tuple[CandidateRow, RelaxationRow]] = {}
        for cand, rel in rows:
            have = chosen.get(cand.id)
            if have is None or have[1].status != "converged":
                chosen[cand.id] = (cand, rel)  # attempts come in order: a later one replaces a failed one
        return list(chosen.values())

    def failed_relaxations(self, cid: str, mlip: str, settings: str,
                           statuses: Sequence[str] | None = None) -> list[tuple[CandidateRow, RelaxationRow]]:
        """Candidates whose effective relaxation failed (optionally only with these statuses)."""
        return [(c, r) for c, r in self.relaxations(cid, mlip, settings)
                if r.status != "converged" and (not statuses or r.status in statuses)]

    def reference_energies(self, mlip: str, settings: str) -> dict[str, ReferenceEnergyRow]:
        """Effective reference energy per structure hash: the one with ``settings`` if it converged, else the
        latest converged rerun (settings hash ``<settings[:10]>-rN``), else the latest attempt."""
        with transaction(self.url) as s:
            rows = list(s.scalars(select(ReferenceEnergyRow).where(
                ReferenceEnergyRow.mlip == mlip, (ReferenceEnergyRow.settings_hash == settings)
                | ReferenceEnergyRow.settings_hash.startswith(f"{settings[:10]}-r"))))
        chosen: dict[str, ReferenceEnergyRow] = {}
        for row in sorted(rows, key=lambda r: attempt_of(r.settings_hash)):
            if row.hash not in chosen or chosen[row.hash].status != "converged":
                chosen[row.hash] = row
        return chosen

    def save_reference_energies(self, results: Sequence[RelaxResult], formulas: dict[str, str]) -> None:
        rows = [dict(mlip=x.mlip, settings_hash=x.settings_hash, hash=x.hash, formula=formulas[x.hash],
                     status=x.status, reason=x.reason, energy_per_atom=x.energy_per_atom,
                     final_structure=x.final_structure) for x in results]
        with transaction(self.url) as s:
            insert_ignore(s, ReferenceEnergyRow, rows, ["mlip", "settings_hash", "hash"])

    # ---- properties ------------------------------------------------------------------------------------
    def save_evaluations(self, cid: str, r: int, evaluations: Sequence[Evaluation], model: str,
                         round_status: str, summary: dict[str, Any]) -> None:
        """Upsert MLIP properties of every evaluated candidate and advance the round, in one transaction."""
        with transaction(self.url) as s:
            ids = dict(s.execute(select(CandidateRow.hash, CandidateRow.id).where(
                CandidateRow.campaign_id == cid, CandidateRow.hash.in_([e.hash for e in evaluations]))).all())
            rows = [dict(candidate_id=ids[e.hash], name=name, value=getattr(e, name), unit=PROPERTY_UNITS[name],
                         source="mlip", model=model, round_index=r)
                    for e in evaluations for name in ("energy_per_atom", "formation_energy_per_atom", "e_above_hull")]
            upsert(s, PropertyRow, rows, ["candidate_id", "name", "source", "model"], ["value", "round_index"])
            if evaluations:  # one executemany by primary key
                s.execute(update(CandidateRow), [{"id": ids[e.hash], "relaxed_match": e.relaxed_match}
                                                 for e in evaluations])
            self._advance(s, cid, r, round_status, summary)  # type: ignore[attr-defined]

    def save_predictions(self, cid: str, r: int, predictions: Sequence[PropertyValue], model: str) -> None:
        """Upsert predicted properties (source ``predictor``, with their sigma) of this campaign's candidates."""
        with transaction(self.url) as s:
            ids = dict(s.execute(select(CandidateRow.hash, CandidateRow.id).where(
                CandidateRow.campaign_id == cid, CandidateRow.hash.in_([p.hash for p in predictions]))).all())
            rows = [dict(candidate_id=ids[p.hash], name=p.name, value=p.value, unit=p.unit, source="predictor",
                         model=model, round_index=r, uncertainty=p.uncertainty) for p in predictions]
            upsert(s, PropertyRow, rows, ["candidate_id", "name", "source", "model"],
                   ["value", "uncertainty", "round_index"])

    def formulas(self, cid: str) -> dict[str, str]:
        """Reduced formula of every candidate of the campaign, by hash."""
        with transaction(self.url) as s:
            return dict(s.execute(select(CandidateRow.hash, CandidateRow.formula).where(
                CandidateRow.campaign_id == cid)).all())

    def properties(self, cid: str) -> list[PropertyValue]:
        """Every stored property of the campaign."""
        with transaction(self.url) as s:
            stmt = select(CandidateRow.hash, PropertyRow.name, PropertyRow.value, PropertyRow.unit,
                          PropertyRow.source, PropertyRow.uncertainty).join(PropertyRow).where(
                CandidateRow.campaign_id == cid)
            return [PropertyValue(*r) for r in s.execute(stmt).all()]
