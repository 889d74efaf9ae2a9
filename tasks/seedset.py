"""Assemble a campaign's seed set: templates from every source and the known phases of the target system."""

from __future__ import annotations

import logging

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from conf.schema import Decoration, MatcherConfig, SeedsConfig, TargetConfig
from tasks.errors import SeedError
from tasks.seeds import Seed, SeedSet, Skipped, ase_reference_state, load_source

log = logging.getLogger("matloop.seeds")


def predict_volume(structure: Structure) -> Structure:
    """Rescale a (substituted) structure to pymatgen's data-mined bond-length volume estimate.

    Falls back to the input when the predictor has no data for a bond.
    """
    from pymatgen.analysis.structure_prediction.volume_predictor import DLSVolumePredictor

    try:
        return DLSVolumePredictor().get_predicted_structure(structure)
    except Exception as exc:  # the predictor raises ValueError/KeyError for missing bond data
        log.debug("volume prediction failed for %s: %s", structure.composition.reduced_formula, exc)
        return structure


def in_system(structure: Structure, elements: list[str]) -> bool:
    """Whether every element of ``structure`` belongs to ``elements``."""
    return {el.symbol for el in structure.composition.elements} <= set(elements)


def decorate(templates: list[Seed], decoration: Decoration) -> Seed:
    """Build a known phase from a template by species replacement (volume re-predicted)."""
    matches = [t for t in templates if t.formula == decoration.template
               and (decoration.label is None or decoration.label.lower() in t.label.lower())]
    if not matches:
        raise SeedError(f"known_phases: no seed with formula {decoration.template!r}"
                        + (f" and label {decoration.label!r}" if decoration.label else "")
                        + " among the loaded seeds")
    template = matches[0]
    structure = template.structure.copy()
    structure.remove_oxidation_states()
    unknown = set(decoration.species) - {el.symbol for el in structure.composition.elements}
    if unknown:
        raise SeedError(f"known_phases: template {template.id} ({template.formula}) has no {sorted(unknown)}")
    structure.replace_species(decoration.species)
    mapping = ",".join(f"{k}>{v}" for k, v in sorted(decoration.species.items()))
    return Seed(id=f"decorated:{template.id}:{mapping}", structure=predict_volume(structure),
                source="decoration", label=template.label)


def _dedupe(seeds: list[Seed]) -> list[Seed]:
    matcher = StructureMatcher()
    kept: list[Seed] = []
    for seed in seeds:
        same = [k for k in kept if k.formula == seed.formula]
        if not any(matcher.fit(k.structure, seed.structure) for k in same):
            kept.append(seed)
    return kept


def exclude_matching(seeds: list[Seed], excluded: list[Seed], matcher: MatcherConfig) -> tuple[list[Seed], Skipped]:
    """``seeds`` without those StructureMatcher matches to a structure of ``excluded``, and (id, reason) of each
    one dropped."""
    from tasks.metrics.matching import MatchIndex

    if not excluded:
        return seeds, []
    index = MatchIndex(matcher)
    for e in excluded:
        index.add(e.id, e.structure)
    kept, dropped = [], []
    for seed in seeds:
        hit = index.find(seed.structure)
        if hit is None:
            kept.append(seed)
        else:
            dropped.append((seed.id, f"excluded: matches {hit} of seeds.exclude"))
    return kept, dropped


def build_seed_set(seeds_cfg: SeedsConfig, target: TargetConfig,
                   matcher: MatcherConfig = MatcherConfig()) -> SeedSet:
    """Load every configured source and pick the known phases of ``target.chemical_system``.

    Seeds matching a structure of ``seeds_cfg.exclude`` are dropped (recorded in ``skipped``). Elements without
    a single-element phase among the seeds get ASE's reference state, so that formation energies always have
    references.

    Raises
    ------
    SeedError
        No usable seed at all, or an element of the system without any reference structure.
    """
    elements = target.chemical_system
    seeds: list[Seed] = []
    skipped: Skipped = []
    for source in seeds_cfg.sources:
        loaded, bad = load_source(source, elements)
        seeds.extend(loaded)
        skipped.extend(bad)
    too_big = [s for s in seeds if len(s.structure) > seeds_cfg.max_sites]
    seeds = [s for s in seeds if len(s.structure) <= seeds_cfg.max_sites and s.structure.is_ordered]
    excluded = [e for source in seeds_cfg.exclude for e in load_source(source, elements)[0]]
    seeds, dropped = exclude_matching(seeds, excluded, matcher)
    skipped.extend(dropped)
    if not seeds:
        kinds = ", ".join(s.kind for s in seeds_cfg.sources)
        raise SeedError(f"the seed set is empty: sources [{kinds}] gave no usable ordered structure with at "
                        f"most {seeds_cfg.max_sites} sites ({len(skipped)} unreadable, {len(too_big)} too large)")
    known = [s for s in seeds if in_system(s.structure, elements)]
    decorated, dropped = exclude_matching([decorate(seeds, d) for d in seeds_cfg.known_phases], excluded, matcher)
    known += decorated
    skipped.extend(dropped)
    for el in elements:
        if not any(s.structure.composition.elements == [s.structure.composition.elements[0]]
                   and s.structure.composition.elements[0].symbol == el for s in known):
            ref = ase_reference_state(el)
            if ref is None:
                raise SeedError(f"no reference structure for element {el}: add a seed source with an "
                                f"elemental phase of {el}")
            log.info("using ASE's reference state for %s (no elemental seed)", el)
            known.append(ref)
    for d in seeds_cfg.known_phases:
        bad = set(d.species.values()) - set(elements)
        if bad:
            raise SeedError(f"known_phases: decoration of {d.template} puts {sorted(bad)} outside the target "
                            f"system {elements}")
    return SeedSet(known_phases=_dedupe(known), templates=seeds, skipped=skipped)
