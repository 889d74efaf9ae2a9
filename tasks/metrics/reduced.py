"""A structure as ``StructureMatcher.fit`` sees it: reduced once, with the invariants the matching code reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, Structure


@dataclass
class Reduced:
    """A structure as ``fit`` sees it (Niggli-reduced, then primitive) with its matching invariants."""

    label: object
    structure: Structure
    key: tuple[str, int]
    minima: np.ndarray
    unit_lattice: Lattice  # the reduced lattice scaled to 1 Å³ per site: what fit compares after scaling volumes
    frac: np.ndarray  # fractional coordinates of the reduced cell's sites
    species: tuple[str, ...] | None  # each site's species, None when a site is disordered


def reduce_structure(label: object, s: Structure) -> Reduced:
    """Reduce once what ``fit`` would reduce for every pair; compute the bucket key and lattice minima."""
    reduced = Structure.from_sites(s).get_reduced_structure(reduction_algo="niggli").get_primitive_structure()
    # get_primitive_structure returns a Niggli-reduced cell (or the Niggli input), so abc are the minima
    scale = (reduced.volume / len(reduced)) ** (1 / 3)
    minima = np.sort(reduced.lattice.abc) / scale
    species = tuple(str(site.specie) for site in reduced) if reduced.is_ordered else None
    return Reduced(label, reduced, (reduced.composition.reduced_formula, len(reduced)), minima,
                   Lattice(reduced.lattice.matrix / scale), np.array(reduced.frac_coords), species)
