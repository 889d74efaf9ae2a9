"""Ion substitution of known structures into the target chemical system.

pymatgen's data-mined substitution probabilities (Hautier et al., Inorg. Chem. 2011) map each template's
ions onto the target ions; every charge-balanced substitution above a probability threshold is a proposal.
Cell volumes are re-predicted with pymatgen's bond-length volume predictor. Arms are compositions (or templates,
``substitution.arm``): feedback re-weights the remaining proposals of a composition by how close its tried
polymorphs landed to the hull. When fewer untried proposals remain than a round asks for, the probability
threshold is lowered tenfold at a time (down to ``min_threshold``) and :meth:`notes` says so.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Species, Structure

from conf.generator import SubstitutionOptions
from tasks.candidate import Candidate, Provenance, structure_to_json
from tasks.errors import GeneratorError
from tasks.generators.base import ArmWeights, data_digest
from tasks.results import Conditions, RoundFeedback
from tasks.seeds import Seed
from tasks.seedset import predict_volume

log = logging.getLogger("matloop.generators")


@dataclass(frozen=True)
class Proposal:
    key: str
    arm: str
    template: str
    probability: float
    structure: Structure
    target: tuple[str, ...]


def target_species_sets(conditions: Conditions) -> list[list[Species]]:
    """Ion sets to substitute into: the full system and, if allowed, every sub-system of two or more."""
    elements = conditions.chemical_system
    sizes = range(2, len(elements) + 1) if conditions.include_subsystems else [len(elements)]
    sets = []
    for size in sizes:
        for combo in itertools.combinations(elements, size):
            charges = [conditions.oxidation_states[el] for el in combo]
            if any(c > 0 for c in charges) and any(c < 0 for c in charges):
                sets.append([Species(el, conditions.oxidation_states[el]) for el in combo])
    return sets


_OXIDIZED: dict[str, Structure | None] = {}
# proposals per (generator identity: options + template ids, threshold, ion set, max_atoms), shared by the generator
# instances of one process (each round rebuilds its generator; a benchmark runs many campaigns)
_POOLS: dict[tuple[str, float, str, int], list[Proposal]] = {}


def oxidized(seed: Seed) -> Structure | None:
    """``seed``'s structure with guessed oxidation states, or ``None`` when no charge-balanced guess exists.

    Memoized per process by the structure's content: the guess takes ~15 ms per template and the campaign
    asks for the same templates every round.
    """
    key = hashlib.sha1(structure_to_json(seed.structure).encode()).hexdigest()
    if key not in _OXIDIZED:
        s = seed.structure.copy()
        try:
            s.add_oxidation_state_by_guess()
        except Exception as exc:  # no charge-balanced guess
            log.debug("template %s has no oxidation-state guess: %s", seed.id, exc)
            s = None
        _OXIDIZED[key] = s
    return _OXIDIZED[key]


class SubstitutionGenerator:
    """Proposes substituted templates, weighted by substitution probability and template (arm) weight."""

    name = "substitution"

    def __init__(self, templates: list[Seed], options: SubstitutionOptions) -> None:
        self.options = options
        self._templates = templates
        self._decorated: list[dict] | None = None
        self._decorated_for = 0  # the most elements a template had to have at most when _decorated was built
        self._key: str | None = None
        self._info = {t.id: (t.formula, t.label) for t in templates}
        self.arms = ArmWeights()
        self._notes: dict = {}

    def notes(self) -> dict:
        """What the last :meth:`sample` had to do beyond the configured settings (a widened threshold)."""
        return dict(self._notes)

    def identity(self) -> str:
        ids = sorted(t.id for t in self._templates)
        return f"substitution:{data_digest(self.options.model_dump(), ids)}"

    def _content_key(self) -> str:
        """Options and a fingerprint of every template (id, formula, sites, volume): the pool cache's key."""
        if self._key is None:
            self._key = data_digest(self.options.model_dump(), [(t.id, t.formula, len(t.structure),
                                                                 round(t.structure.volume, 3)) for t in self._templates])
        return self._key

    def update(self, feedback: RoundFeedback) -> None:
        self.arms.update(feedback)

    def _oxidized_templates(self, max_elements: int) -> list[dict]:
        """Templates with an oxidation-state guess; pymatgen's Substitutor only maps a template with exactly
        as many species as the target, so templates with more than ``max_elements`` are never guessed."""
        if self._decorated is None or self._decorated_for < max_elements:
            self._decorated, self._decorated_for = [], max_elements
            for seed in self._templates:
                if len(seed.structure.composition.elements) > max_elements:
                    continue
                s = oxidized(seed)
                if s is not None:
                    self._decorated.append({"structure": s, "id": seed.id})
        return self._decorated

    def pool(self, conditions: Conditions, threshold: float | None = None) -> list[Proposal]:
        """Every substitution proposal for ``conditions`` with probability at least ``threshold`` (default: the
        configured one), cached per ion set, ordered deterministically."""
        from pymatgen.analysis.structure_prediction.substitutor import Substitutor

        threshold = self.options.threshold if threshold is None else threshold
        proposals: list[Proposal] = []
        substitutor = Substitutor(threshold=threshold)
        targets = target_species_sets(conditions)
        for target in targets:
            label = "-".join(str(sp) for sp in target)
            key = (self._content_key(), threshold, label, conditions.max_atoms)
            if key not in _POOLS:
                found = []
                templates = self._oxidized_templates(max(len(t) for t in targets))
                for ts in substitutor.pred_from_structures(target, templates,
                                                           remove_duplicates=True, remove_existing=False):
                    template_id = ts.history[0]["source"]
                    species_map = ts.history[1]["species_map"]
                    mapping = ",".join(sorted(f"{k}>{v['element']}" for k, v in
                                              ((str(k), v) for k, v in species_map.items())))
                    structure = ts.final_structure.copy()
                    structure.remove_oxidation_states()
                    if len(structure) > conditions.max_atoms:
                        continue
                    arm = structure.composition.reduced_formula if self.options.arm == "composition" else template_id
                    found.append(Proposal(key=f"{template_id}|{mapping}", arm=arm, template=template_id,
                                          probability=float(ts.other_parameters["proba"]),
                                          structure=structure, target=tuple(str(sp) for sp in target)))
                if len(_POOLS) >= 64:  # campaigns rebuild the generator every round: keep the newest 64 pools
                    _POOLS.pop(next(iter(_POOLS)))
                _POOLS[key] = sorted(found, key=lambda p: p.key)
            proposals.extend(_POOLS[key])
        return proposals

    def sample(self, n: int, conditions: Conditions, seed: int) -> list[Candidate]:
        missing = set(conditions.chemical_system) - set(conditions.oxidation_states)
        if missing:
            raise GeneratorError(f"substitution needs oxidation states for {sorted(missing)}")
        threshold = self.options.threshold
        pool = [p for p in self.pool(conditions, threshold) if p.key not in self.arms.proposed]
        while len(pool) < n and threshold / 10 >= self.options.min_threshold * (1 - 1e-9):
            threshold /= 10  # widen: lower-probability substitutions of the same templates
            pool = [p for p in self.pool(conditions, threshold) if p.key not in self.arms.proposed]
        self._notes = {"threshold_widened_to": threshold} if threshold != self.options.threshold else {}
        if not pool:
            log.warning("substitution: every proposal for %s down to probability %g has been tried",
                        "-".join(conditions.chemical_system), threshold)
            self._notes["exhausted"] = True
            return []
        rng = np.random.default_rng(seed)
        scores = np.array([p.probability ** self.options.probability_exponent for p in pool]) * self.arms.scores(
            [p.arm for p in pool], [p.structure.composition.reduced_formula for p in pool])
        identity, conditions_hash = self.identity(), conditions.digest()
        out = []
        for i in self.arms.choose(rng, scores, n):
            p = pool[i]
            template = p.template
            prov = Provenance(generator=self.name, generator_identity=identity, round_index=conditions.round_index,
                              arm=p.arm, key=p.key, conditions_hash=conditions_hash,
                              details={"template": template, "template_formula": self._info[template][0],
                                       "template_label": self._info[template][1], "probability": p.probability,
                                       "target_ions": list(p.target)})
            out.append(Candidate.create(predict_volume(p.structure), prov))
        return out
