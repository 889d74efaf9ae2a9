"""The DFT step of one round, against the store: queue the selection and its references, then turn finished
calculations into DFT properties and a round summary. No Prefect here (see :mod:`flows.dft`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from conf.dft import DFTConfig
from conf.schema import CampaignConfig
from tasks.acquisition.correction import CompositionCorrection
from tasks.candidate import structure_from_json
from tasks.dft.inputs import cp2k_settings_hash
from tasks.dft.select import formation_energy_per_atom, lowest_elemental_phases, mean_absolute_error, rank_for_dft
from tasks.errors import EvaluationError
from tasks.store import DFT_TERMINAL, Store

VASP_MAKER = "MPGGADoubleRelaxStaticMaker"


def calc_settings(cfg: DFTConfig) -> tuple[dict[str, Any], str]:
    """The settings stored with each calculation and the hash of those that change the energy."""
    if cfg.code == "vasp":
        return {"code": "vasp", "maker": VASP_MAKER}, "vasp-mp"
    return {"code": "cp2k", **cfg.cp2k.model_dump(mode="json")}, cp2k_settings_hash(cfg.cp2k)


def references_dir(cfg: CampaignConfig) -> Path:
    return (cfg.dft.references_dir or Path(cfg.output_dir) / "dft-references").resolve()


def _elements(structure_json: str) -> set[str]:
    return {el.symbol for el in structure_from_json(structure_json).composition.elements}


def queue_references(store: Store, cid: str, elements: set[str], cfg: CampaignConfig) -> list[int]:
    """Queue (once per element and settings hash, shared by all campaigns) the elemental references.

    Each reference is the campaign's lowest-energy MLIP-relaxed elemental known phase.
    """
    from tasks.context import relax_context

    settings, shash = calc_settings(cfg.dft)
    have = store.dft_references(shash)
    need = sorted(elements - set(have))
    if need:
        _, spec, rhash = relax_context(store, cid)
        known = store.known_phase_seeds(cid)
        phases = lowest_elemental_phases([(known[h].id, row.formula, row.energy_per_atom, row.final_structure)
                                          for h, row in store.reference_energies(spec.identity, rhash).items()
                                          if h in known and row.status == "converged"])
        missing = [el for el in need if el not in phases]
        if missing:
            raise EvaluationError(f"no relaxed elemental phase for {missing} to compute DFT references from")
        root = references_dir(cfg)
        store.queue_dft([dict(campaign_id="", label=f"element:{el}", kind="reference", round_index=None,
                              structure=phases[el][1], settings=settings, settings_hash=shash,
                              backend=cfg.dft.backend, calc_dir=str(root / f"{el}-{shash}")) for el in need])
        have = store.dft_references(shash)
    return [have[el].id for el in sorted(elements) if have[el].state not in DFT_TERMINAL]


def plan_round(store: Store, cid: str, r: int, cfg: CampaignConfig) -> tuple[list[int], dict[str, Any]]:
    """Select and queue round ``r``'s calculations and the references they need.

    Returns the ids still to drive (this round's unfinished calculations, including ones submitted before a
    restart, and unfinished references) and the selection numbers for the summary.
    """
    from tasks.context import relax_context

    _, spec, rhash = relax_context(store, cid)
    settings, shash = calc_settings(cfg.dft)
    sel = cfg.dft.selection
    pool = store.dft_pool(cid, r, spec.identity, rhash)
    campaign_rows = store.dft_calcs(cid)
    this_round = sum(row.round_index == r for row in campaign_rows)  # queued before a restart count too
    correction, fitted_on = mlip_to_dft_correction(store, cid, sel.correction_prior_sigma)
    shift = correction.predict([p["formula"] for p in pool]) if pool else None
    ranked = rank_for_dft(pool, store.dft_labels(cid, shash), sel.per_round - this_round,
                          sel.per_campaign - len({row.label for row in campaign_rows}), sel.max_e_above_hull,
                          sel.max_sites, correction=shift, function=sel.acquisition, kappa=sel.kappa,
                          target=cfg.evaluate.stability_threshold, seed=cfg.seed * 7919 + r)
    chosen = [x["hash"] for x in ranked if x["chosen"]]
    store.save_acquisition(cid, r, ranked, None, stage="dft")
    by_hash = {p["hash"]: p for p in pool}
    root = Path(store.campaign(cid).campaign_dir) / "dft"
    store.queue_dft([dict(campaign_id=cid, label=h, kind="candidate", round_index=r,
                          structure=by_hash[h]["structure"], settings=settings, settings_hash=shash,
                          backend=cfg.dft.backend, calc_dir=str(root / f"{h}-{shash}")) for h in chosen])
    rows = store.dft_calcs(cid, round_index=r)
    elements = set().union(*(_elements(row.structure) for row in rows)) if rows else set()
    ids = [row.id for row in rows if row.state not in DFT_TERMINAL]
    ids += queue_references(store, cid, elements, cfg)
    return ids, {"pool": len(pool), "selected": len(chosen), "acquisition": sel.acquisition,
                 "correction_fitted_on": fitted_on}


def mlip_to_dft_correction(store: Store, cid: str, prior_sigma: float) -> tuple[CompositionCorrection, int]:
    """The MLIP-to-DFT formation-energy correction fitted on the campaign's candidates with both values, and how
    many there were."""
    values: dict[str, dict[str, float]] = {}
    for p in store.properties(cid):
        if p.name == "formation_energy_per_atom" and p.source in ("mlip", "dft"):
            values.setdefault(p.hash, {})[p.source] = p.value
    formulas = {row.label: structure_from_json(row.structure).composition.reduced_formula
                for row in store.dft_calcs(cid) if row.state == "completed" and row.label in values}
    pairs = [(formulas[h], v["mlip"], v["dft"]) for h, v in values.items() if h in formulas and len(v) == 2]
    return CompositionCorrection(prior_sigma).fit(sorted(pairs)), len(pairs)


def settle_round(store: Store, cid: str, r: int, cfg: CampaignConfig, extra: dict[str, Any] | None = None) -> dict:
    """DFT properties of round ``r``'s completed calculations (energy, formation energy from same-settings
    references, band gap) and the summary comparing them with the MLIP (MAE of formation energies)."""
    rows = store.dft_calcs(cid, round_index=r)
    hashes = {row.settings_hash for row in rows}
    refs = {(h, el): ref for h in hashes for el, ref in store.dft_references(h).items()}
    mlip = {(p.hash, p.name): p.value for p in store.properties(cid) if p.source == "mlip"}
    values: list[tuple[str, str, float, str]] = []
    pairs: list[tuple[float, float]] = []
    problems = {}
    for row in rows:
        if row.state != "completed":
            continue
        values.append((row.label, "energy_per_atom", row.energy_per_atom, "eV/atom"))
        if row.band_gap is not None:
            values.append((row.label, "band_gap", row.band_gap, "eV"))
        mu = {el: ref.energy_per_atom for (h, el), ref in refs.items()
              if h == row.settings_hash and ref.state == "completed"}
        formula = structure_from_json(row.structure).composition.formula
        try:
            ef = formation_energy_per_atom(formula, row.energy_per_atom, mu)
        except EvaluationError as exc:
            problems[row.label] = str(exc)
            continue
        values.append((row.label, "formation_energy_per_atom", ef, "eV/atom"))
        if (row.label, "formation_energy_per_atom") in mlip:
            pairs.append((ef, mlip[(row.label, "formation_energy_per_atom")]))
    states = Counter(row.state for row in rows)
    used = {el: ref.state for (h, el), ref in refs.items()}
    summary = {"backend": cfg.dft.backend, "code": cfg.dft.code, "calculations": len(rows),
               **{s: states.get(s, 0) for s in ("completed", "failed", "lost")}, "references": used,
               "mae_formation_energy_per_atom": mean_absolute_error(pairs), "mae_pairs": len(pairs),
               "unusable": problems, **(extra or {})}
    previous = store.round(cid, r).summary.get("dft")
    summary = {**(previous if isinstance(previous, dict) else {}), **summary}
    store.save_dft_properties(cid, r, values, cfg.dft.code, {"dft": summary, **_satisfaction(store, cid, r, cfg,
                                                                                              values)})
    return summary


def _satisfaction(store: Store, cid: str, r: int, cfg: CampaignConfig, values: list[tuple[str, str, float, str]]
                  ) -> dict[str, Any]:
    """The round's ``property_satisfaction`` with this settlement's DFT values (tasks.properties.targets); empty
    when every target is an MLIP property."""
    from tasks.properties.targets import MLIP_PROPERTIES, recalibrated, satisfaction
    from tasks.results import PropertyValue

    targets = dict(cfg.target.properties)
    other = sorted(set(targets) - MLIP_PROPERTIES)
    if not other:
        return {}
    fresh = {(h, name) for h, name, _, _ in values}
    props = [p for p in store.properties(cid) if not (p.source == "dft" and (p.hash, p.name) in fresh)]
    props += [PropertyValue(h, name, value, unit, "dft") for h, name, value, unit in values]
    props, _ = recalibrated(props, other, store.formulas(cid))
    evaluated = {p.hash for p in props if p.source == "mlip"}
    hashes = {c.hash for _, _, c in store.proposals(cid, r)} & evaluated
    return {"property_satisfaction": satisfaction(props, hashes, targets)}


def requeue(store: Store, cid: str, states: list[str], cfg: CampaignConfig) -> tuple[list[int], list[int]]:
    """Put the campaign's calculations in ``states`` (and its references in them) back to ``queued`` with the
    settings of ``cfg``; returns the ids to drive and the rounds to settle afterwards."""
    settings, shash = calc_settings(cfg.dft)
    rows = store.dft_calcs(cid, states, with_references=True)
    taken = store.dft_labels(cid, shash)
    ids, rounds, elements = [], set(), set()
    for row in rows:
        if row.settings_hash != shash and (row.kind == "reference" or row.label in taken):
            continue  # new energy settings: references are recomputed below under the new hash
        store.requeue_dft(row.id, settings, shash, cfg.dft.backend)
        ids.append(row.id)
        if row.kind == "candidate":
            rounds.add(row.round_index)
            elements |= _elements(row.structure)
    ids += [i for i in queue_references(store, cid, elements, cfg) if i not in ids]
    return ids, sorted(rounds)
