"""Symmetry-constrained random crystals (pyxtal), as in AIRSS-style random structure search.

Compositions are the charge-balanced stoichiometries of the target system (and, if allowed, its
sub-systems) that fit ``max_atoms``; for each sample a composition (arm) is drawn by its weight, then a
space group and a number of formula units, and pyxtal places the atoms on compatible Wyckoff positions.
"""

from __future__ import annotations

import itertools
import logging
import math
from functools import reduce

import numpy as np
from pymatgen.core import Composition

from conf.generator import RandomOptions
from tasks.candidate import Candidate, Provenance
from tasks.errors import GeneratorError
from tasks.generators.base import ArmWeights, data_digest
from tasks.results import Conditions, RoundFeedback

log = logging.getLogger("matloop.generators")


def charge_balanced_compositions(elements: list[str], oxidation_states: dict[str, int], max_atoms: int,
                                 include_subsystems: bool) -> list[dict[str, int]]:
    """Reduced integer stoichiometries with zero net charge and at most ``max_atoms`` atoms per formula unit."""
    if len(elements) == 1:
        return [{elements[0]: 1}]
    sizes = range(2, len(elements) + 1) if include_subsystems else [len(elements)]
    out = []
    for size in sizes:
        for combo in itertools.combinations(elements, size):
            charges = [oxidation_states[el] for el in combo]
            for counts in itertools.product(range(1, max_atoms + 1), repeat=size):
                if sum(counts) > max_atoms or reduce(math.gcd, counts) != 1:
                    continue
                if sum(c * q for c, q in zip(counts, charges)) == 0:
                    out.append(dict(zip(combo, counts)))
    return sorted(out, key=lambda c: (sum(c.values()), Composition(c).reduced_formula))


class RandomGenerator:
    """Random symmetric crystals of charge-balanced compositions; arms are compositions."""

    name = "random"

    def __init__(self, options: RandomOptions) -> None:
        self.options = options
        self.arms = ArmWeights()

    def identity(self) -> str:
        import pyxtal

        return f"random:pyxtal-{pyxtal.__version__}:{data_digest(self.options.model_dump())}"

    def notes(self) -> dict:
        return {}

    def update(self, feedback: RoundFeedback) -> None:
        self.arms.update(feedback)

    def _one(self, rng: np.random.Generator, composition: dict[str, int], max_atoms: int):
        from pyxtal import pyxtal

        per_fu = sum(composition.values())
        for attempt in range(self.options.max_attempts):
            z = int(rng.integers(1, max_atoms // per_fu + 1))
            group = int(rng.integers(2, 231))
            crystal = pyxtal()
            try:
                crystal.from_random(3, group, list(composition), [c * z for c in composition.values()],
                                    factor=self.options.volume_factor, random_state=int(rng.integers(2**31)))
            except Exception:  # pyxtal raises for Wyckoff-incompatible counts; try another group
                continue
            if crystal.valid:
                return crystal.to_pymatgen(), group, z, attempt
        return None

    def sample(self, n: int, conditions: Conditions, seed: int) -> list[Candidate]:
        compositions = charge_balanced_compositions(conditions.chemical_system, conditions.oxidation_states,
                                                    conditions.max_atoms, conditions.include_subsystems)
        if not compositions:
            raise GeneratorError(f"no charge-balanced composition of {conditions.chemical_system} with "
                                 f"oxidation states {conditions.oxidation_states} fits {conditions.max_atoms} atoms")
        formulas = [Composition(c).reduced_formula for c in compositions]
        weights = self.arms.scores(formulas, formulas)
        rng = np.random.default_rng(seed)
        identity, conditions_hash = self.identity(), conditions.digest()
        out: list[Candidate] = []
        for i in range(n):
            k = int(self.arms.choose(rng, weights, 1)[0])
            made = self._one(rng, compositions[k], conditions.max_atoms)
            if made is None:
                log.info("random: no structure for %s after %d attempts", formulas[k], self.options.max_attempts)
                continue
            structure, group, z, attempt = made
            prov = Provenance(generator=self.name, generator_identity=identity, round_index=conditions.round_index,
                              arm=formulas[k], key=f"{formulas[k]}|seed{seed}|{i}", conditions_hash=conditions_hash,
                              details={"spacegroup": group, "formula_units": z, "attempts": attempt + 1})
            out.append(Candidate.create(structure, prov))
        return out
