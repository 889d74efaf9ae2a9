"""Acquisition step: which accepted candidates of a round are relaxed.

With ``acquisition.function: all`` every accepted candidate is relaxed (the step only records that). Otherwise, with
``acquisition.surrogate: mlip`` (the default), each accepted candidate gets one single-point energy from the
campaign's MLIP and its E_hull against the campaign's hull is the prediction (sigma 0; tasks/acquisition/screen.py).
With ``surrogate: formation_energy | e_above_hull`` an :class:`~tasks.acquisition.surrogate.EnsembleSurrogate` is
trained on the campaign's relaxed known phases and
candidates (their MLIP formation energies), predicts each accepted candidate's formation energy with an
uncertainty, turns it into a predicted E_hull against the campaign's hull (the reference table when configured,
else the self-consistent one), and ``relax_per_round`` candidates are chosen by the acquisition function with a
diversity penalty per composition. Every ranked candidate is stored with its prediction, sigma, value and choice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from prefect import task
from pymatgen.analysis.phase_diagram import PDEntry
from pymatgen.core import Composition, Structure

from conf.loop import AcquisitionConfig
from tasks.acquisition.functions import acquisition_values, select
from tasks.acquisition.surrogate import EnsembleSurrogate
from tasks.errors import EvaluationError
from tasks.results import TaskRecord


def rank_candidates(candidates: Sequence[tuple[str, Structure]], train: Sequence[tuple[Structure, float | None]],
                    e_above_hull: Callable[[Composition, float], float], cfg: AcquisitionConfig, target: float,
                    seed: int, screened: np.ndarray | None = None, target_prob: np.ndarray | None = None,
                    earlier: Mapping[str, int] | None = None) -> list[dict]:
    """One row per candidate (``hash``, ``function``, ``predicted_e_above_hull``, ``sigma``, ``value``,
    ``chosen``, ``rank``); ``train``: structures with formation energies (eV/atom), None for a candidate whose
    relaxation failed (labelled ``cfg.failed_e_above_hull`` above the hull, or left out); ``target``: the E_hull
    expected improvement is measured against (the stability threshold); ``screened``: the candidates' MLIP
    single-point E_hull (needed by ``cfg.surrogate`` mlip, which uses it as the prediction, sigma 0);
    ``target_prob``: each candidate's predicted probability of meeting the targets an MLIP cannot give (band gap),
    which costs ``cfg.target_weight`` eV/atom times its complement; ``earlier``: the campaign's relaxations per
    reduced formula in earlier rounds, each costing ``cfg.repeat_penalty`` (not under random choice)."""
    if not candidates:
        return []
    structures = [s for _, s in candidates]
    if cfg.surrogate == "mlip":
        if screened is None or len(screened) != len(candidates):
            raise EvaluationError("acquisition.surrogate mlip needs a single-point E_hull for every candidate")
        mu, sigma = np.asarray(screened, dtype=float), np.zeros(len(candidates))
        return _choose(candidates, structures, mu, sigma, cfg, target, seed, target_prob, earlier)
    model = EnsembleSurrogate(trees=cfg.ensemble, seed=seed)
    penalty = cfg.failed_e_above_hull
    if penalty is None:
        train = [(s, e) for s, e in train if e is not None]
    if cfg.surrogate == "e_above_hull":  # learn the distance to the hull itself: bounded, composition-smooth
        model.fit([s for s, _ in train], [penalty if e is None else e_above_hull(s.composition, e) for s, e in train])
        mu, sigma = model.predict(structures)
    else:  # learn the formation energy, measure it against the hull at the candidate's composition
        # a failed relaxation: the formation energy `penalty` above the hull (E_hull is linear in E_form)
        model.fit([s for s, _ in train], [penalty - e_above_hull(s.composition, 0.0) if e is None else e
                                          for s, e in train])
        mu_ef, sigma = model.predict(structures)
        mu = np.array([e_above_hull(s.composition, float(m)) for s, m in zip(structures, mu_ef)])
    return _choose(candidates, structures, mu, sigma, cfg, target, seed, target_prob, earlier)


def _choose(candidates, structures, mu, sigma, cfg: AcquisitionConfig, target: float, seed: int,
            target_prob: np.ndarray | None = None, earlier: Mapping[str, int] | None = None) -> list[dict]:
    values = acquisition_values(mu, sigma, cfg.function, kappa=cfg.kappa, target=target, seed=seed)
    if target_prob is not None and cfg.function != "random":
        values = values - cfg.target_weight * (1.0 - np.asarray(target_prob, dtype=float))
    picked = select(values, [s.composition.reduced_formula for s in structures], cfg.relax_per_round or 0,
                    cfg.diversity, earlier if cfg.function != "random" else None, cfg.repeat_penalty)
    rank = {i: n for n, i in enumerate(picked)}
    return [{"hash": h, "function": cfg.function, "predicted_e_above_hull": float(mu[i]), "sigma": float(sigma[i]),
             "value": float(values[i]), "chosen": i in rank, "rank": rank.get(i)}
            for i, (h, _) in enumerate(candidates)]


def campaign_hull(references: Sequence[tuple[str, float]], candidates: Sequence[tuple[str, float]],
                  elements: Sequence[str]):
    """A formation-energy hull (elements at 0) of ``(formula, E_form per atom)`` pairs: the campaign's own."""
    from tasks.metrics.hull import ReferenceHull

    entries = [PDEntry(Composition(el), 0.0) for el in elements]
    entries += [PDEntry(Composition(f), e * Composition(f).num_atoms) for f, e in (*references, *candidates)]
    return ReferenceHull(entries)


class TrainingSet(NamedTuple):
    """What a campaign's surrogate learns from: structures with MLIP formation energies (eV/atom; None for a
    candidate whose relaxation failed), and the hull its predictions are measured against."""

    train: list[tuple[Structure, float | None]]
    hull: Any  # tasks.metrics.hull.ReferenceHull
    elemental: dict[str, float]  # eV/atom: turns the campaign's MLIP energies into formation energies
    spec: Any  # tasks.mlip.MLIPSpec: the campaign's MLIP (the screen's single points use it)


def campaign_training_set(store, campaign_id: str, candidates: bool = True, structures: bool = True) -> TrainingSet:
    """The campaign's relaxed known phases (and, with ``candidates``, its converged candidates) with formation
    energies, and its hull (the reference table when configured, else the campaign's own). Without ``structures``
    ``train`` stays empty (the MLIP screen needs only the hull and the elemental energies)."""
    from tasks.candidate import structure_from_json
    from tasks.context import relax_context
    from tasks.metrics.hull import formation_energy_per_atom, load_elemental_references, load_reference_hull
    from tasks.stability import mlip_elemental_energies

    cfg, spec, shash = relax_context(store, campaign_id)
    known = store.known_phase_seeds(campaign_id)
    refs = [(row.formula, row.energy_per_atom, row.final_structure) for h, row in
            store.reference_energies(spec.identity, shash).items() if h in known and row.status == "converged"]
    ev = cfg.evaluate
    elemental = (mlip_elemental_energies([(f, f, e) for f, e, _ in refs]) if ev.elemental_references is None
                 else dict(ev.elemental_references) if isinstance(ev.elemental_references, dict)
                 else load_elemental_references(ev.elemental_references))
    train, ref_ef = [], []
    for formula, epa, js in refs:
        try:
            ef = formation_energy_per_atom(Composition(formula), epa, elemental)
        except EvaluationError:  # an element without a reference energy: not a training point
            continue
        if structures:
            train.append((structure_from_json(js), ef))
        ref_ef.append((formula, ef))
    cand_ef = []
    if candidates:
        eform = {p.hash: p.value for p in store.properties(campaign_id)
                 if p.name == "formation_energy_per_atom" and p.source == "mlip"}
        proposed_inputs = cfg.acquisition.inputs == "proposed"
        for c, rel in store.relaxations(campaign_id, spec.identity, shash):
            if rel.status == "converged" and c.hash in eform:
                if structures:
                    train.append((structure_from_json(c.structure if proposed_inputs else rel.final_structure),
                                  eform[c.hash]))
                cand_ef.append((c.formula, eform[c.hash]))
            elif rel.status != "converged" and structures:  # a failure: by acquisition.failed_e_above_hull or out
                train.append((structure_from_json(c.structure), None))
    hull = (load_reference_hull(ev.reference_hull) if ev.reference_hull is not None
            else campaign_hull(ref_ef, cand_ef, cfg.target.chemical_system))
    return TrainingSet(train, hull, elemental, spec)


@task(name="acquire")
def acquire_task(store_url: str, campaign_id: str, round_index: int, references_relaxed: int = 0) -> TaskRecord:
    """Rank the round's accepted candidates and store which are relaxed."""
    from tasks.context import round_seed
    from tasks.store import Store

    start = time.time()
    store = Store(store_url)
    cfg = store.config(campaign_id)
    acq = cfg.acquisition
    if acq.function == "all":
        store.advance_round(campaign_id, round_index, "acquired", {"acquisition": "all"})
        return TaskRecord.since(start, compute_s=0.0)
    if not cfg.feedback.enabled:  # the control: what is relaxed does not depend on the campaign's results
        acq = acq.model_copy(update={"function": "random"})
    screen = acq.surrogate == "mlip"  # the control still screens: its record says what acquisition would pick
    train, hull, elemental, spec = campaign_training_set(store, campaign_id, structures=not screen)
    accepted = [(c.hash, c.structure) for c in store.accepted(campaign_id, round_index)]
    if accepted and not screen and not any(e is not None for _, e in train):
        raise EvaluationError("acquisition has nothing to learn from: no known phase or candidate of the campaign has "
                              "a converged relaxation with a formation energy (check the known phases' relaxations)")
    missing = sorted(set(cfg.target.chemical_system) - set(elemental))
    if accepted and screen and missing:
        raise EvaluationError(f"the MLIP screen needs an energy per atom for every element of the target; missing: "
                              f"{', '.join(missing)} (check the elemental phases' relaxations or "
                              "evaluate.elemental_references)")
    screened = None
    if screen and accepted:  # one single point per proposal with the campaign's own MLIP
        from tasks.acquisition.screen import screened_e_above_hull, single_point_energies
        from tasks.mlip import load_calculator

        structures = [s for _, s in accepted]
        screened = screened_e_above_hull(structures, single_point_energies(structures, load_calculator(spec)),
                                         elemental, hull.e_above_hull)
    target_prob = None
    from tasks.properties.targets import campaign_correction, predictor_for, target_probability

    predictor = predictor_for(cfg) if accepted and acq.target_weight > 0 else None
    if predictor is not None:
        target_prob = target_probability(predictor, [s.composition.reduced_formula for _, s in accepted],
                                         dict(cfg.target.properties),
                                         campaign_correction(store.properties(campaign_id), predictor.property,
                                                             store.formulas(campaign_id)))
    earlier = None
    if acq.repeat_penalty > 0 and acq.function != "random":  # what the campaign relaxed before this round
        from tasks.context import relax_settings_hash

        earlier = Counter(c.formula for c, _ in store.relaxations(campaign_id, spec.identity,
                                                                  relax_settings_hash(cfg.relax))
                          if c.round_index < round_index)
    rows = rank_candidates(accepted, train, hull.e_above_hull, acq, cfg.evaluate.stability_threshold,
                           round_seed(cfg.seed, round_index), screened, target_prob, earlier)
    chosen = sorted((r for r in rows if r["chosen"]), key=lambda r: r["rank"])
    summary = {"acquisition": acq.function if cfg.feedback.enabled else "random (feedback.enabled: false)",
               "references_relaxed_first": references_relaxed, "ranked": len(rows), "chosen": len(chosen),
               "surrogate": acq.surrogate, "surrogate_train": None if screen else len(train),
               "screened": len(screened) if screened is not None else 0,
               "predicted_best_e_above_hull": min((r["predicted_e_above_hull"] for r in chosen), default=None)}
    if target_prob is not None:  # mean predicted probability of meeting the non-MLIP targets: chosen vs all
        index = {h: i for i, (h, _) in enumerate(accepted)}
        summary["target_probability"] = {"chosen": float(np.mean([target_prob[index[r["hash"]]] for r in chosen]))
                                         if chosen else None, "ranked": float(np.mean(target_prob)),
                                         "predictor": predictor.hash}
    store.save_acquisition(campaign_id, round_index, rows, summary)
    return TaskRecord.since(start)
