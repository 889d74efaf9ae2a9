"""Validity exactly as CDVAE and DiffCSP define it.

* Compositional: SMACT charge neutrality + Pauling electronegativity test on the gcd-reduced integer
  stoichiometry; single-element and (with ``include_alloys``) all-metal compositions are valid;
  compositions with more than 1e7 oxidation-state combinations are invalid.
* Structural: the smallest distance between two distinct sites (minimum image) is at least 0.5 Å and the
  cell volume is at least 0.1 Å³.

CDVAE ran with SMACT 2.2, whose default oxidation-state list is what SMACT 4 calls ``smact14``; SMACT 4's
new default (``icsd24``) is stricter. ``smact14`` is the default here so numbers compare with the
published baselines.
"""

from __future__ import annotations

import itertools
import math
from functools import reduce
from typing import Literal

import numpy as np
from pymatgen.core import Composition, Structure

OxidationSet = Literal["smact14", "icsd24"]
MAX_OXIDATION_COMBINATIONS = 1e7
_ATTRIBUTE = {"smact14": "oxidation_states_smact14", "icsd24": "oxidation_states"}


def composition_valid(composition: Composition, oxidation_states: OxidationSet = "smact14",
                      use_pauling_test: bool = True, include_alloys: bool = True) -> bool:
    """CDVAE's ``smact_validity`` for a composition (see the module docstring)."""
    import smact
    from smact.screening import pauling_test

    if oxidation_states not in _ATTRIBUTE:
        raise ValueError(f"unknown oxidation-state set {oxidation_states!r}; allowed: {', '.join(_ATTRIBUTE)}")
    amounts = composition.get_el_amt_dict()
    symbols = tuple(amounts)
    if len(symbols) == 1:
        return True
    if include_alloys and all(s in smact.metals for s in symbols):
        return True
    counts = [int(round(amounts[s])) for s in symbols]
    if any(abs(c - amounts[s]) > 1e-6 for c, s in zip(counts, symbols)):
        return False  # fractional occupancies have no integer stoichiometry
    g = reduce(math.gcd, counts)
    counts = [c // g for c in counts]
    space = smact.element_dictionary(symbols)
    elements = [space[s] for s in symbols]
    ox_combos = [getattr(e, _ATTRIBUTE[oxidation_states]) or [] for e in elements]
    if math.prod(len(o) for o in ox_combos) > MAX_OXIDATION_COMBINATIONS:
        return False
    electronegativities = [e.pauling_eneg for e in elements]
    threshold = max(counts)
    stoichs = [(c,) for c in counts]
    for ox_states in itertools.product(*ox_combos):
        if smact.neutral_ratios(ox_states, stoichs=stoichs, threshold=threshold):
            if not use_pauling_test:
                return True
            try:
                if pauling_test(ox_states, electronegativities):
                    return True
            except TypeError:  # missing electronegativity data: accepted, as CDVAE does
                return True
    return False


def structure_valid(structure: Structure, cutoff: float = 0.5, min_volume: float = 0.1) -> bool:
    """CDVAE's structural validity: distinct sites at least ``cutoff`` Å apart, volume at least 0.1 Å³."""
    if structure.volume < min_volume:
        return False
    if len(structure) < 2:
        return True
    d = structure.distance_matrix
    return bool(d[np.triu_indices(len(structure), 1)].min() >= cutoff)
