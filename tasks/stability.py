"""Property evaluation: formation energies and energies above the convex hull, and what counts as a hit.

By default the hull is self-consistent: pymatgen's PhaseDiagram of the known phases of the system and every
candidate relaxed so far, all with the same MLIP; elemental references are the lowest-energy elemental phases.
With ``evaluate.reference_hull`` it is a fixed table the user trusts (e.g. MP-20's DFT formation energies):
MLIP energies become formation energies against ``evaluate.elemental_references`` (or the MLIP's elemental
phases) and E_hull is measured against that table alone, so it can be negative (below the known hull).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from prefect import task
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Structure

from conf.schema import MatcherConfig, TargetRange
from tasks.candidate import is_new_stable, structure_from_json
from tasks.errors import EvaluationError
from tasks.metrics.hull import ReferenceHull, formation_energy_per_atom
from tasks.metrics.matching import MatchIndex
from tasks.results import Evaluation, TaskRecord

Energy = tuple[str, str, float]  # (label or hash, formula, energy per atom in eV/atom)


def _entry(label: str, formula: str, energy_per_atom: float) -> PDEntry:
    comp = Composition(formula)
    return PDEntry(comp, energy_per_atom * comp.num_atoms, name=label)


def meets_targets(values: dict[str, float], targets: dict[str, TargetRange]) -> bool:
    """All targets satisfied; a target on a property without a value is not met."""
    return all(name in values and target.contains(values[name], tolerance=0.05) for name, target in targets.items())


def build_hull(references: Sequence[Energy], candidates: Sequence[Energy]) -> tuple[PhaseDiagram, list[PDEntry]]:
    """Phase diagram of references + candidates; returns it and the candidates' entries (in order)."""
    ref_entries = [_entry(*r) for r in references]
    cand_entries = [_entry(*c) for c in candidates]
    elements = {el for e in ref_entries + cand_entries for el in e.composition.elements}
    have = {e.composition.elements[0] for e in ref_entries if len(e.composition.elements) == 1}
    missing = sorted(str(el) for el in elements - have)
    if missing:
        raise EvaluationError(f"no relaxed elemental reference for {missing}: the hull needs one phase of each "
                              "element (check the known phases' relaxations)")
    return PhaseDiagram(ref_entries + cand_entries), cand_entries


def relaxed_matches(known: Sequence[tuple[str, Structure]], candidates: Sequence[tuple[str, Structure]],
                    matcher: MatcherConfig, earlier: Sequence[tuple[str, Structure]] = ()) -> dict[str, str]:
    """For each relaxed candidate (in proposal order): the known phase or earlier candidate it matches, or ''.
    ``earlier``: candidates judged new ('') by an earlier evaluation, in proposal order; they join the pool after
    the known phases, as they would if ``candidates`` started with them."""
    pool = MatchIndex(matcher)
    for label, structure in (*known, *earlier):
        pool.add(label, structure)
    out = {}
    for h, structure in candidates:
        out[h] = pool.find(structure) or ""
        if not out[h]:
            pool.add(h, structure)
    return out


def evaluate_on_reference(candidates: Sequence[Energy], hull: ReferenceHull, elemental: dict[str, float],
                          stability_threshold: float, targets: dict[str, TargetRange],
                          matches: dict[str, str] | None = None) -> list[Evaluation]:
    """Evaluations of ``candidates`` against a fixed reference hull: formation energies from ``elemental``
    (eV/atom), E_hull from ``hull`` (negative below it)."""
    matches = matches or {}
    out = []
    for h, formula, epa in candidates:
        comp = Composition(formula)
        eform = formation_energy_per_atom(comp, epa, elemental)
        ehull = hull.e_above_hull(comp, eform)
        values = {"energy_per_atom": epa, "formation_energy_per_atom": eform, "e_above_hull": ehull}
        out.append(Evaluation(hash=h, formula=formula, stable=ehull <= stability_threshold,
                              meets_targets=meets_targets(values, targets), relaxed_match=matches.get(h, ""),
                              **values))
    return out


def mlip_elemental_energies(references: Sequence[Energy]) -> dict[str, float]:
    """Lowest energy per atom of each element among relaxed known phases (eV/atom)."""
    out: dict[str, float] = {}
    for _, formula, epa in references:
        comp = Composition(formula)
        if len(comp.elements) == 1:
            el = comp.elements[0].symbol
            out[el] = min(out.get(el, math.inf), epa)
    return out


def evaluate_candidates(references: Sequence[Energy], candidates: Sequence[Energy], stability_threshold: float,
                        targets: dict[str, TargetRange], matches: dict[str, str] | None = None,
                        ) -> tuple[list[Evaluation], list[str]]:
    """Evaluations of ``candidates`` and the formulas of the stable phases of the hull."""
    if not candidates:
        return [], []
    pd, entries = build_hull(references, candidates)
    matches = matches or {}
    out = []
    for (h, formula, epa), entry in zip(candidates, entries):
        ehull = float(pd.get_e_above_hull(entry))
        values = {"energy_per_atom": epa, "formation_energy_per_atom": float(pd.get_form_energy_per_atom(entry)),
                  "e_above_hull": ehull}
        out.append(Evaluation(hash=h, formula=formula, stable=ehull <= stability_threshold,
                              meets_targets=meets_targets(values, targets), relaxed_match=matches.get(h, ""),
                              **values))
    stable = sorted({e.composition.reduced_formula for e in pd.stable_entries})
    return out, stable


def _with_target_properties(store, cfg, campaign_id: str, round_index: int, evaluations: list[Evaluation]):
    """Predict the targets an MLIP cannot give (band gap; tasks.properties.targets), store the predictions, and
    judge ``meets_targets`` on each candidate's best value (lab > DFT > predictor, the predictor recalibrated on
    the campaign's DFT/lab values). Returns the evaluations, a function of the round's hashes giving the property
    satisfaction per source, and the summary's record of the predictor's correction."""
    from tasks.properties.targets import (
        MLIP_PROPERTIES,
        best_values,
        predict,
        predictor_for,
        recalibrated,
        satisfaction,
    )

    targets = dict(cfg.target.properties)
    other = sorted(set(targets) - MLIP_PROPERTIES)
    if not other:
        return evaluations, lambda hashes: {}, {}
    predictor = predictor_for(cfg)
    if predictor is not None:
        store.save_predictions(campaign_id, round_index, predict(predictor, [(e.hash, e.formula) for e in evaluations]),
                               predictor.hash)
    props, corrections = recalibrated(store.properties(campaign_id), other,  # on its own DFT/lab values
                                      store.formulas(campaign_id))
    best = best_values(props, other)
    judged = [e.model_copy(update={"meets_targets": meets_targets(
        {"energy_per_atom": e.energy_per_atom, "formation_energy_per_atom": e.formation_energy_per_atom,
         "e_above_hull": e.e_above_hull, **best.get(e.hash, {})}, targets)}) for e in evaluations]
    record = ({"predictor_correction": {n: c.record() for n, c in corrections.items()}}
              if predictor is not None else {})
    return judged, lambda hashes: satisfaction(props, hashes, targets), record


@task(name="evaluate")
def evaluate_task(store_url: str, campaign_id: str, round_index: int) -> TaskRecord:
    """Evaluate every converged candidate of the campaign against the current hull and store the properties."""
    from tasks.context import relax_context
    from tasks.store import Store

    start = time.time()
    store = Store(store_url)
    cfg, spec, shash = relax_context(store, campaign_id)
    known = store.known_phase_seeds(campaign_id)
    ref_rows = {h: row for h, row in store.reference_energies(spec.identity, shash).items()
                if h in known and row.status == "converged"}
    refs = [(known[h].id, row.formula, row.energy_per_atom) for h, row in ref_rows.items()]
    relaxed = [(c, r) for c, r in store.relaxations(campaign_id, spec.identity, shash) if r.status == "converged"]
    cands = [(c.hash, c.formula, r.energy_per_atom) for c, r in relaxed]
    # a candidate's relaxed match is decided once, at its first evaluation: only the new ones are matched, against
    # the known phases and the earlier new candidates of their own formulas (a match needs the same formula)
    pending = [(c, r) for c, r in relaxed if c.relaxed_match is None]
    formulas = {c.formula for c, _ in pending}
    matches = {c.hash: c.relaxed_match for c, _ in relaxed if c.relaxed_match is not None}
    matches.update(relaxed_matches(
        [(known[h].id, structure_from_json(row.final_structure)) for h, row in ref_rows.items()],
        [(c.hash, structure_from_json(r.final_structure)) for c, r in pending], cfg.filter.matcher,
        [(c.hash, structure_from_json(r.final_structure)) for c, r in relaxed
         if c.relaxed_match == "" and c.formula in formulas]))
    ev = cfg.evaluate
    if ev.reference_hull is None:
        evaluations, stable = evaluate_candidates(refs, cands, ev.stability_threshold, dict(cfg.target.properties),
                                                  matches)
    else:
        from tasks.metrics.hull import load_elemental_references, load_reference_hull

        hull = load_reference_hull(ev.reference_hull)
        elemental = (mlip_elemental_energies(refs) if ev.elemental_references is None
                     else dict(ev.elemental_references) if isinstance(ev.elemental_references, dict)
                     else load_elemental_references(ev.elemental_references))
        evaluations = evaluate_on_reference(cands, hull, elemental, ev.stability_threshold,
                                            dict(cfg.target.properties), matches)
        system = frozenset(cfg.target.chemical_system)
        stable = sorted({e.composition.reduced_formula for e in hull.phase_diagram(system).stable_entries}
                        | {e.formula for e in evaluations if e.e_above_hull < 0})
    evaluations, satisfied, corrections = _with_target_properties(store, cfg, campaign_id, round_index, evaluations)
    this_round = {c.hash for c, _ in relaxed if c.round_index == round_index}
    mine = [e for e in evaluations if e.hash in this_round]
    hits = sum(is_new_stable(e.e_above_hull, e.relaxed_match, e.formula, ev.stability_threshold) for e in mine)
    summary = {"evaluated": len(mine), "stable": sum(e.stable for e in mine),
               "new_after_relaxation": sum(not e.relaxed_match for e in mine),
               "stable_new": hits,
               # S.U.N. rate: stable, unique and novel (filter) and still new after relaxation, over all proposals
               "sun_rate": hits / max(store.round(campaign_id, round_index).summary.get("generated", 0), 1),
               "hull": "reference" if ev.reference_hull is not None else "self-consistent",
               "meets_targets": sum(e.meets_targets for e in mine),
               "best_e_above_hull": min((e.e_above_hull for e in mine), default=None),
               "hull_phases": stable, "references_used": len(refs),
               "property_satisfaction": satisfied(this_round), **corrections}
    store.save_evaluations(campaign_id, round_index, evaluations, spec.identity, "evaluated", summary)
    return TaskRecord.since(start)
