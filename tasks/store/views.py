"""Read-only views of a campaign for the CLI, exports and benchmarks (pandas DataFrames)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select
from sqlalchemy.orm import defer

from tasks.candidate import is_compound, is_new_stable
from tasks.store.engine import transaction
from tasks.store.tables import (
    AcquisitionRow,
    CampaignRow,
    CandidateRow,
    PropertyRow,
    ProposalRow,
    RelaxationRow,
    VerdictRow,
)

if TYPE_CHECKING:
    import pandas as pd

CANDIDATE_COLUMNS = ["hash", "formula", "round", "generator", "arm", "origin", "status", "nsites",
                     "e_above_hull", "formation_energy_per_atom", "energy_per_atom", "relax_status", "relax_reason",
                     "relaxed_match", "stable_new", "mlip", "rejection", "predicted_e_above_hull", "sigma",
                     "acquisition_value", "chosen"]


def candidate_frame(url: str, cid: str, hashes: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per candidate (only those of ``hashes`` when given): provenance, verdict, latest relaxation and
    MLIP properties (eV/atom), ``stable_new`` (:func:`tasks.candidate.is_new_stable`), sorted by energy above hull
    (unrelaxed last). Structures are not read."""
    mine = [CandidateRow.campaign_id == cid] + ([CandidateRow.hash.in_(list(hashes))] if hashes is not None else [])
    with transaction(url) as s:
        campaign = s.get(CampaignRow, cid)
        threshold = campaign.config["evaluate"]["stability_threshold"] if campaign is not None else 0.1
        cands = s.scalars(select(CandidateRow).options(defer(CandidateRow.structure)).where(*mine)).all()
        props = s.execute(select(PropertyRow.candidate_id, PropertyRow.name, PropertyRow.value)
                          .join(CandidateRow).where(*mine, PropertyRow.source == "mlip")).all()
        relax = s.execute(select(RelaxationRow.candidate_id, RelaxationRow.status, RelaxationRow.reason,
                                 RelaxationRow.mlip).join(CandidateRow).where(*mine).order_by(RelaxationRow.id)).all()
        verdicts = s.execute(select(ProposalRow.candidate_id, VerdictRow.rejections).join(
            VerdictRow, VerdictRow.proposal_id == ProposalRow.id).join(
            CandidateRow, CandidateRow.id == ProposalRow.candidate_id).where(
            *mine, VerdictRow.passed.is_(False)).order_by(ProposalRow.id)).all()
        acquired = {a.candidate_id: a for a in s.scalars(select(AcquisitionRow).join(  # the latest relax ranking
            CandidateRow, CandidateRow.id == AcquisitionRow.candidate_id).where(
            *mine, AcquisitionRow.stage == "relax").order_by(AcquisitionRow.round_index))}
    values: dict[int, dict[str, float]] = {}
    for cand_id, name, value in props:
        values.setdefault(cand_id, {})[name] = value
    relaxed = {cand_id: (st, reason, mlip) for cand_id, st, reason, mlip in relax}
    rejected: dict[int, str] = {}
    for cand_id, rejections in verdicts:
        rejected.setdefault(cand_id, f"{rejections[0]['check']}: {rejections[0]['detail']}" if rejections else "")
    rows = []
    for c in cands:
        st, reason, mlip = relaxed.get(c.id, (None, None, None))
        v = values.get(c.id, {})
        rows.append(dict(hash=c.hash, formula=c.formula, round=c.round_index, generator=c.generator,
                         arm=c.provenance.get("arm"), origin=describe_origin(c.provenance), status=c.status,
                         nsites=c.nsites,
                         e_above_hull=v.get("e_above_hull"),
                         formation_energy_per_atom=v.get("formation_energy_per_atom"),
                         energy_per_atom=v.get("energy_per_atom"), relax_status=st, relax_reason=reason,
                         relaxed_match=c.relaxed_match, mlip=mlip,
                         stable_new=is_new_stable(v.get("e_above_hull"), c.relaxed_match, c.formula, threshold),
                         rejection=rejected.get(c.id, "") if c.status == "rejected" else "",
                         **_acquired(acquired.get(c.id))))
    import pandas as pd  # here: `matloop status` needs no pandas (its import is a third of the command's time)

    df = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    formulas = {c.hash: c.formula for c in cands} if hashes is None else None  # None: all of them, read there
    for name, column in _target_values(url, cid, campaign.config if campaign is not None else {}, formulas).items():
        df[name] = df["hash"].map(column)  # a target property an MLIP cannot give: value, sigma, source
    return df.sort_values(["e_above_hull", "round", "hash"], na_position="last").reset_index(drop=True)


def _target_values(url: str, cid: str, config: dict, formulas: dict[str, str] | None
                   ) -> dict[str, dict[str, object]]:
    """Columns ``<name>``, ``<name>_sigma`` and ``<name>_source`` (lab > dft > predictor, predictions with the
    campaign's correction: what its targets are judged on) for each targeted property an MLIP cannot give;
    ``formulas``: the campaign's candidates, hash -> reduced formula (None: read them here)."""
    from tasks.properties.targets import MLIP_PROPERTIES, best_properties, recalibrated
    from tasks.results import PropertyValue

    names = [n for n in (config.get("target") or {}).get("properties", {}) if n not in MLIP_PROPERTIES]
    if not names:
        return {}
    with transaction(url) as s:
        if formulas is None:
            formulas = dict(s.execute(select(CandidateRow.hash, CandidateRow.formula).where(
                CandidateRow.campaign_id == cid)).all())
        props = [PropertyValue(*r) for r in s.execute(
            select(CandidateRow.hash, PropertyRow.name, PropertyRow.value, PropertyRow.unit, PropertyRow.source,
                   PropertyRow.uncertainty).join(PropertyRow).where(CandidateRow.campaign_id == cid,
                                                                    PropertyRow.name.in_(names))).all()]
    best = best_properties(recalibrated(props, names, formulas)[0], names)
    out: dict[str, dict[str, object]] = {}
    for name in names:
        mine = {h: d[name] for h, d in best.items() if name in d}
        out[name] = {h: p.value for h, p in mine.items()}
        out[f"{name}_sigma"] = {h: p.uncertainty for h, p in mine.items()}
        out[f"{name}_source"] = {h: p.source for h, p in mine.items()}
    return out


def _acquired(row: AcquisitionRow | None) -> dict:
    if row is None:
        return {"predicted_e_above_hull": None, "sigma": None, "acquisition_value": None, "chosen": None}
    return {"predicted_e_above_hull": row.predicted_e_above_hull, "sigma": row.sigma,
            "acquisition_value": row.value, "chosen": row.chosen}


def describe_origin(provenance: dict) -> str:
    """A short human description of where a candidate came from (template or random symmetry)."""
    d = provenance.get("details", {})
    if "template_formula" in d:
        label = f" ({d['template_label']})" if d.get("template_label") else ""
        return f"{d['template_formula']}{label} {d['template']}"
    if "spacegroup" in d:
        return f"random, space group {d['spacegroup']}, Z={d.get('formula_units')}"
    return str(provenance.get("arm", ""))


def relaxed_structure_json(url: str, cid: str, hashes: list[str]) -> dict[str, str]:
    """Relaxed structure (pymatgen JSON) of each converged candidate in ``hashes``."""
    with transaction(url) as s:
        rows = s.execute(select(CandidateRow.hash, RelaxationRow.final_structure).join(RelaxationRow).where(
            CandidateRow.campaign_id == cid, CandidateRow.hash.in_(hashes),
            RelaxationRow.status == "converged").order_by(RelaxationRow.id)).all()
    return {h: js for h, js in rows}


def round_progress(url: str, cid: str, r: int) -> dict[str, int]:
    """Counts for a round's progress bars: proposals, accepted, relaxed."""
    with transaction(url) as s:
        proposed = s.scalar(select(func.count()).select_from(ProposalRow).where(
            ProposalRow.campaign_id == cid, ProposalRow.round_index == r)) or 0
        accepted = s.scalar(select(func.count()).select_from(ProposalRow).join(
            VerdictRow, VerdictRow.proposal_id == ProposalRow.id).where(
            ProposalRow.campaign_id == cid, ProposalRow.round_index == r, VerdictRow.passed.is_(True))) or 0
        relaxed = s.scalar(select(func.count(func.distinct(RelaxationRow.candidate_id))).join(CandidateRow).join(
            ProposalRow, ProposalRow.candidate_id == CandidateRow.id).join(
            VerdictRow, VerdictRow.proposal_id == ProposalRow.id).where(
            ProposalRow.campaign_id == cid, ProposalRow.round_index == r, VerdictRow.passed.is_(True))) or 0
    return {"proposed": proposed, "accepted": accepted, "relaxed": relaxed}


def _e_hull_rows(cid: str, include_known: bool):
    """Query of ``(hash, formula, e_above_hull)`` of a campaign's evaluated candidates, best first; only those that
    relaxed into no known phase and no earlier candidate unless ``include_known``."""
    q = select(CandidateRow.hash, CandidateRow.formula, PropertyRow.value).join(PropertyRow).where(
        CandidateRow.campaign_id == cid, PropertyRow.name == "e_above_hull", PropertyRow.source == "mlip")
    if not include_known:
        q = q.where(or_(CandidateRow.relaxed_match.is_(None), CandidateRow.relaxed_match == ""))
    return q.order_by(PropertyRow.value, CandidateRow.round_index, CandidateRow.hash)


def best_candidates(url: str, cid: str, top: int, include_known: bool = False) -> tuple[pd.DataFrame, int]:
    """The ``top`` best evaluated candidates by E_hull as :func:`candidate_frame` rows, and how many candidates
    the campaign holds: what ``matloop candidates`` shows, without reading the whole campaign."""
    with transaction(url) as s:
        hashes = [h for h, _, _ in s.execute(_e_hull_rows(cid, include_known).limit(top)).all()]
        total = s.scalar(select(func.count()).select_from(CandidateRow).where(CandidateRow.campaign_id == cid)) or 0
    return candidate_frame(url, cid, hashes), total


def campaign_summary(url: str, cid: str, threshold: float) -> dict[str, object]:
    """Counts for ``matloop status``: candidates, converged relaxations, stable new (``is_new_stable`` at
    ``threshold``, eV/atom) and the best new E_hull (a multi-element candidate that relaxed into nothing known)."""
    with transaction(url) as s:
        n = s.scalar(select(func.count()).select_from(CandidateRow).where(CandidateRow.campaign_id == cid)) or 0
        converged = s.scalar(select(func.count()).select_from(CandidateRow).where(
            CandidateRow.campaign_id == cid, CandidateRow.status == "relaxed")) or 0
        best = next((value for _, formula, value in s.execute(_e_hull_rows(cid, include_known=False).limit(1000))
                     if is_compound(formula)), None)  # LIMIT: SQLite keeps a bounded sorter, not all rows
        if best is None:  # the first thousand were all elemental cells: read on
            best = next((value for _, formula, value in s.execute(_e_hull_rows(cid, include_known=False))
                         if is_compound(formula)), None)
        new = _e_hull_rows(cid, include_known=False).where(PropertyRow.value <= threshold).order_by(None).subquery()
        stable = sum(k for formula, k in s.execute(select(new.c.formula, func.count()).group_by(new.c.formula))
                     if is_compound(formula))  # is_new_stable, counted per formula
    return {"candidates": n, "converged": converged, "stable_new": stable, "best_new_e_above_hull": best}
