"""The candidate: a pymatgen Structure, its canonical hash and where it came from.

The hash is the candidate's identity everywhere: store keys, Prefect cache keys and file names.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Composition, Structure

from conf.base import Strict


def normalize_structure(structure: Structure) -> Structure:
    """A copy without oxidation states or site properties, with coordinates wrapped into [0, 1)."""
    s = structure.copy()
    s.remove_oxidation_states()
    for key in list(s.site_properties):
        s.remove_site_property(key)
    return Structure(s.lattice, s.species, np.mod(s.frac_coords, 1.0), to_unit_cell=True)


DISTANCE_FLOOR = 0.5  # Å, the validity filter's hard floor: a relaxation that ends with atoms closer has collapsed


def collapse_reason(structure: Structure) -> str:
    """Why a relaxed structure counts as exploded (two atoms closer than :data:`DISTANCE_FLOOR`), or ''."""
    if len(structure) < 2:
        return ""
    dmin = float(structure.distance_matrix[np.triu_indices(len(structure), 1)].min())
    return f"atoms {dmin:.2f} Å apart after relaxation" if dmin < DISTANCE_FLOOR else ""


def is_new_stable(e_above_hull: float | None, relaxed_match: str | None, formula: str, threshold: float) -> bool:
    """The campaign's one definition of a hit: relaxed, E_hull at most ``threshold`` (eV/atom), still new after
    relaxation (it matches no known phase and no earlier candidate), and not a single-element cell (elemental
    cells are references, never discoveries). ``matloop status``, ``matloop candidates``, the round summaries
    and the discovery benchmark all count with it."""
    if e_above_hull is None or (isinstance(e_above_hull, float) and math.isnan(e_above_hull)):
        return False
    return e_above_hull <= threshold and not relaxed_match and is_compound(formula)


@lru_cache(maxsize=4096)
def is_compound(formula: str) -> bool:
    """More than one element (a formula of one element is a reference phase, never a discovery)."""
    return len(Composition(formula).elements) > 1


def structure_hash(structure: Structure, decimals: int = 3) -> str:
    """Canonical 16-hex hash of a structure, independent of site order and cell setting.

    The Niggli-reduced cell's lengths/angles and its sites (species, fractional coordinates rounded to
    ``decimals`` and wrapped into [0, 1)) are sorted and hashed. Two structures that differ only by site
    order, by a lattice setting or by wrapping get the same hash; symmetry-equivalent structures that differ
    otherwise are left to StructureMatcher.
    """
    s = normalize_structure(structure).get_reduced_structure(reduction_algo="niggli")
    scale = 10.0**decimals
    lattice = [round(x, decimals) + 0.0 for x in (*s.lattice.abc, *s.lattice.angles)]
    frac = np.mod(np.round(np.mod(s.frac_coords, 1.0) * scale) / scale, 1.0) + 0.0
    sites = sorted((site.species_string, *(round(float(c), decimals) for c in f)) for site, f in zip(s, frac))
    payload = json.dumps([s.composition.formula, lattice, sites], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def structure_to_json(structure: Structure) -> str:
    """Serialize a Structure for the store."""
    return json.dumps(structure.as_dict())


def structure_from_json(text: str) -> Structure:
    """Inverse of :func:`structure_to_json`."""
    return Structure.from_dict(json.loads(text))


class Provenance(Strict):
    """Where a candidate came from."""

    generator: str = Field(description="Generator name, e.g. 'substitution'.")
    generator_identity: str = Field(description="Generator identity (name, settings and data hash).")
    round_index: int = Field(description="Round in which it was proposed (0-based).")
    arm: str = Field(description="Feedback group: template id (substitution) or composition (random).")
    key: str = Field(description="Unique proposal key inside the generator (same key, same proposal).")
    conditions_hash: str = Field(description="Hash of the Conditions the sample was drawn under.")
    details: dict[str, Any] = Field(default_factory=dict, description="Generator-specific details.")


class Candidate(BaseModel):
    """A proposed structure with its identity and provenance."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    structure: Structure
    hash: str = Field(description="structure_hash of the structure.")
    provenance: Provenance

    @classmethod
    def create(cls, structure: Structure, provenance: Provenance) -> Candidate:
        """Normalize ``structure`` and compute its hash."""
        s = normalize_structure(structure)
        return cls(structure=s, hash=structure_hash(s), provenance=provenance)

    @property
    def formula(self) -> str:
        return self.structure.composition.reduced_formula
