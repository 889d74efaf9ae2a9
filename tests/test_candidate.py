"""Canonical structure hash: invariant to site order, wrapping and cell setting; sensitive to structure."""

import numpy as np
from pymatgen.core import Lattice, Structure

from tasks.candidate import Candidate, Provenance, structure_from_json, structure_hash, structure_to_json


def rocksalt(a=4.21):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_hash_invariant_to_site_order_and_wrapping():
    s = rocksalt()
    permuted = Structure(s.lattice, [s[i].species for i in reversed(range(len(s)))],
                         [s[i].frac_coords for i in reversed(range(len(s)))])
    shifted = Structure(s.lattice, s.species, s.frac_coords + np.array([1.0, -1.0, 2.0]), to_unit_cell=False)
    assert structure_hash(s) == structure_hash(permuted) == structure_hash(shifted)


def test_hash_invariant_to_lattice_setting():
    s = rocksalt()
    prim = s.get_primitive_structure()
    other = prim.copy()
    other.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])  # same cell volume, another setting
    assert structure_hash(prim) == structure_hash(other)


def test_hash_distinguishes_structures():
    assert structure_hash(rocksalt(4.21)) != structure_hash(rocksalt(4.30))
    s = rocksalt()
    s.replace_species({"Mg": "Ca"})
    assert structure_hash(s) != structure_hash(rocksalt())


def test_candidate_normalizes_and_roundtrips():
    s = rocksalt()
    s.add_oxidation_state_by_element({"Mg": 2, "O": -2})
    prov = Provenance(generator="test", generator_identity="t", round_index=0, arm="a", key="k", conditions_hash="c")
    cand = Candidate.create(s, prov)
    assert all(not hasattr(sp, "oxi_state") or sp.oxi_state is None for sp in cand.structure.species)
    assert cand.hash == structure_hash(rocksalt())
    assert structure_hash(structure_from_json(structure_to_json(cand.structure))) == cand.hash
