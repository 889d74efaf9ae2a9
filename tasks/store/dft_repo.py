"""DFT calculations and their state machine (mixed into :class:`tasks.store.Store`).

States: ``queued -> submitted -> running -> completed | failed | lost``. Every transition is a
compare-and-set on the current state, so two processes driving the same calculation never both submit it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, select, update

from tasks.errors import StoreError
from tasks.store.engine import insert_ignore, transaction, upsert
from tasks.store.tables import CandidateRow, DFTCalcRow, PropertyRow

DFT_STATES = ("queued", "submitted", "running", "completed", "failed", "lost")
DFT_TERMINAL = ("completed", "failed", "lost")
# submitted -> queued: a submission cut short before any job existed is claimed back (tasks/dft/calc.py)
_NEXT = {"queued": {"submitted", "failed"}, "submitted": {"queued", "running", *DFT_TERMINAL},
         "running": set(DFT_TERMINAL), "completed": set(), "failed": set(), "lost": set()}
_RESULT_FIELDS = ("energy", "energy_per_atom", "final_structure", "forces", "stress", "scf_converged",
                  "band_gap", "wall_time_s", "code_version")


def check_states(states: Sequence[str]) -> list[str]:
    bad = [s for s in states if s not in DFT_STATES]
    if bad:
        raise StoreError(f"unknown DFT state(s) {bad}; allowed: {', '.join(DFT_STATES)}")
    return list(states)


class DFTRepo:
    url: str

    def queue_dft(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert calculations (idempotent on campaign, label, settings hash); returns their ids in order."""
        if not rows:
            return []
        with transaction(self.url) as s:
            insert_ignore(s, DFTCalcRow, [{"state": "queued", "history": [], **r} for r in rows],
                          ["campaign_id", "label", "settings_hash"])
            keys = [(r["campaign_id"], r["label"], r["settings_hash"]) for r in rows]
            found = {(c, lab, h): i for i, c, lab, h in s.execute(select(
                DFTCalcRow.id, DFTCalcRow.campaign_id, DFTCalcRow.label, DFTCalcRow.settings_hash).where(
                DFTCalcRow.label.in_([k[1] for k in keys])))}
        return [found[k] for k in keys]

    def dft_calc(self, calc_id: int) -> DFTCalcRow:
        with transaction(self.url) as s:
            row = s.get(DFTCalcRow, calc_id)
        if row is None:
            raise StoreError(f"no DFT calculation with id {calc_id} in {self.url}")
        return row

    def dft_calcs(self, cid: str, states: Sequence[str] | None = None, round_index: int | None = None,
                  with_references: bool = False) -> list[DFTCalcRow]:
        """Calculations of a campaign (and, optionally, the shared references its candidates use)."""
        cond = [DFTCalcRow.campaign_id == cid]
        if round_index is not None:
            cond.append(DFTCalcRow.round_index == round_index)
        stmt = select(DFTCalcRow).where(and_(*cond))
        if states:
            stmt = stmt.where(DFTCalcRow.state.in_(check_states(states)))
        with transaction(self.url) as s:
            rows = list(s.scalars(stmt.order_by(DFTCalcRow.id)))
            if with_references:
                hashes = {r.settings_hash for r in rows}
                ref = select(DFTCalcRow).where(DFTCalcRow.campaign_id == "", DFTCalcRow.settings_hash.in_(hashes))
                if states:
                    ref = ref.where(DFTCalcRow.state.in_(states))
                rows += list(s.scalars(ref.order_by(DFTCalcRow.id)))
        return rows

    def dft_labels(self, cid: str, settings_hash: str) -> set[str]:
        with transaction(self.url) as s:
            return set(s.scalars(select(DFTCalcRow.label).where(DFTCalcRow.campaign_id == cid,
                                                                DFTCalcRow.settings_hash == settings_hash)))

    def dft_references(self, settings_hash: str) -> dict[str, DFTCalcRow]:
        """Shared elemental references with these settings, keyed by element symbol."""
        with transaction(self.url) as s:
            rows = s.scalars(select(DFTCalcRow).where(DFTCalcRow.campaign_id == "",
                                                      DFTCalcRow.settings_hash == settings_hash))
            return {r.label.split(":", 1)[1]: r for r in rows}

    def transition(self, calc_id: int, new: str, expect: str | Sequence[str] | None = None, **values: Any) -> bool:
        """Move a calculation to ``new`` if it is still in ``expect`` (default: any state allowed to go there).

        Returns False when another process moved it first (nothing is written then).
        """
        check_states([new])
        allowed = [expect] if isinstance(expect, str) else list(expect or [k for k, v in _NEXT.items() if new in v])
        bad = [a for a in allowed if new not in _NEXT[a]]
        if bad:
            raise StoreError(f"DFT calculation {calc_id}: no transition {bad} -> {new!r}; "
                             f"allowed from there: {sorted(_NEXT[bad[0]]) or 'none (final)'}")
        unknown = set(values) - {"reason", "job_id", *_RESULT_FIELDS}
        if unknown:
            raise StoreError(f"cannot set {sorted(unknown)} on a DFT calculation")
        with transaction(self.url) as s:
            res = s.execute(update(DFTCalcRow).where(DFTCalcRow.id == calc_id, DFTCalcRow.state.in_(allowed))
                            .values(state=new, **values))
            return res.rowcount == 1

    def set_dft_job(self, calc_id: int, job_id: str) -> None:
        """Record the scheduler's job id (or ``host:pid``) of a submitted calculation."""
        with transaction(self.url) as s:
            s.execute(update(DFTCalcRow).where(DFTCalcRow.id == calc_id).values(job_id=job_id))

    def requeue_dft(self, calc_id: int, settings: dict[str, Any], settings_hash: str, backend: str) -> None:
        """Put a finished calculation back to ``queued`` with new settings, keeping the attempt in history."""
        with transaction(self.url) as s:
            row = s.get(DFTCalcRow, calc_id)
            if row is None or row.state not in DFT_TERMINAL:
                raise StoreError(f"DFT calculation {calc_id} is {row.state if row else 'missing'}; only "
                                 f"{', '.join(DFT_TERMINAL)} calculations can be rerun")
            attempt = {"state": row.state, "reason": row.reason, "job_id": row.job_id, "backend": row.backend,
                       "settings_hash": row.settings_hash, "settings": row.settings, "energy": row.energy}
            row.history = [*(row.history or []), attempt]
            row.state, row.reason, row.job_id = "queued", "", None
            row.settings, row.settings_hash, row.backend = settings, settings_hash, backend
            for field in _RESULT_FIELDS:
                setattr(row, field, "" if field == "code_version" else None)

    # ---- selection inputs and DFT properties ------------------------------------------------------------
    def dft_pool(self, cid: str, r: int, mlip: str, relax_hash: str) -> list[dict[str, Any]]:
        """Converged candidates first proposed in round ``r`` with their MLIP E_hull and relaxed structure."""
        relaxed = {c.id: (c, rel) for c, rel in self.relaxations(cid, mlip, relax_hash)  # type: ignore[attr-defined]
                   if c.round_index == r and rel.status == "converged"}
        with transaction(self.url) as s:
            ehull = dict(s.execute(select(PropertyRow.candidate_id, PropertyRow.value).where(
                PropertyRow.candidate_id.in_(list(relaxed)), PropertyRow.name == "e_above_hull",
                PropertyRow.source == "mlip", PropertyRow.model == mlip)).all())
        return [dict(hash=c.hash, formula=c.formula, nsites=c.nsites, novel=not c.relaxed_match,
                     structure=rel.final_structure, e_above_hull=ehull[i])
                for i, (c, rel) in relaxed.items() if i in ehull]

    def save_dft_properties(self, cid: str, r: int, values: Sequence[tuple[str, str, float, str]], model: str,
                            summary: dict[str, Any]) -> None:
        """Upsert ``(hash, name, value, unit)`` properties with source 'dft' and advance round ``r`` to 'dft'
        (a round already past it, e.g. when failed calculations are rerun later, keeps its state)."""
        from tasks.store.repo import round_reached

        status = self.round(cid, r).status  # type: ignore[attr-defined]
        with transaction(self.url) as s:
            ids = dict(s.execute(select(CandidateRow.hash, CandidateRow.id).where(
                CandidateRow.campaign_id == cid, CandidateRow.hash.in_([v[0] for v in values]))).all())
            rows = [dict(candidate_id=ids[h], name=name, value=value, unit=unit, source="dft", model=model,
                         round_index=r) for h, name, value, unit in values]
            upsert(s, PropertyRow, rows, ["candidate_id", "name", "source", "model"], ["value", "round_index"])
            self._advance(s, cid, r, status if round_reached(status, "dft") else "dft", summary)  # type: ignore[attr-defined]
