"""The validity filter on hand-made cases with known answers."""

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from conf.schema import FilterConfig, MatcherConfig
from tasks.candidate import Candidate, Provenance
from tasks.metrics.matching import MatchIndex
from tasks.metrics.validity import composition_valid
from tasks.validity import cheap_rejections, filter_batch, geometry_rejections


@pytest.mark.parametrize("formula, valid", [
    ("NaCl", True), ("MgO", True), ("Mg2SiO4", True), ("NaCl2", False), ("MgO2Si5", False),
    ("Fe", True),        # single element
    ("CuZn", True),      # all-metal alloy
    ("Na2O", True), ("NaO3", False),
])
def test_smact_validity_cdvae_definition(formula, valid):
    assert composition_valid(Composition(formula)) is valid


def rocksalt(a=4.21, species=("Mg", "O")):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def cand(structure, key="k"):
    prov = Provenance(generator="t", generator_identity="t", round_index=0, arm="a", key=key, conditions_hash="c")
    return Candidate.create(structure, prov)


def test_atoms_too_close_are_rejected():
    s = Structure(Lattice.cubic(6.0), ["Mg", "O"], [[0, 0, 0], [0.4 / 6.0, 0, 0]])
    checks = {r.check for r in geometry_rejections(s, FilterConfig())}
    assert "min_distance" in checks and "covalent_distance" in checks
    assert not geometry_rejections(rocksalt(), FilterConfig())


def test_volume_and_density_bounds():
    checks = {r.check for r in geometry_rejections(rocksalt(a=12.0), FilterConfig())}
    assert {"volume", "density"} <= checks


def test_elements_outside_system_and_charge():
    rej = cheap_rejections(rocksalt(species=("Na", "Cl")), FilterConfig(), ["Mg", "O"], 20)
    assert [r.check for r in rej] == ["elements"]
    peroxide_like = Structure(Lattice.cubic(4.2), ["Mg", "O", "O", "O"],
                              [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    assert "charge_neutrality" in {r.check for r in cheap_rejections(peroxide_like, FilterConfig(), ["Mg", "O"], 20)}


def test_rotated_permuted_copy_is_a_duplicate_and_seed_match_is_not_novel():
    base = rocksalt().get_primitive_structure()
    rotated = Structure(Lattice(base.lattice.matrix @ _rotation(0.7)), list(reversed(base.species)),
                        list(reversed(base.frac_coords)))
    strained = rocksalt(4.5).get_primitive_structure()
    references = MatchIndex(MatcherConfig())
    seen = MatchIndex(MatcherConfig())
    wurtzite = Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.3, 5.2), ["Mg", "O"],
                                         [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]])
    references.add("seed-wz", wurtzite)
    batch = [(0, cand(base, "a")), (0, cand(rotated, "b")), (0, cand(strained, "c")), (0, cand(wurtzite, "d")),
             (0, cand(base, "e"))]
    verdicts = filter_batch(batch, 0, FilterConfig(), ["Mg", "O"], 20, references, seen)
    assert [v.passed for v in verdicts] == [True, False, False, False, False]
    assert verdicts[1].rejections[0].check == "duplicate" and verdicts[1].matched_hash == batch[0][1].hash
    assert verdicts[2].rejections[0].check == "duplicate"   # 7 % strain: same structure within stol
    assert verdicts[3].rejections[0].check == "novelty" and verdicts[3].matched_hash == "seed-wz"
    assert "identical structure" in verdicts[4].rejections[0].detail


def test_earlier_round_structures_are_duplicates():
    seen = MatchIndex(MatcherConfig())
    seen.add("old", rocksalt().get_primitive_structure())
    verdicts = filter_batch([(1, cand(rocksalt(4.25), "x")), (0, cand(rocksalt(), "y"))], 1, FilterConfig(),
                            ["Mg", "O"], 20, MatchIndex(MatcherConfig()), seen)
    assert verdicts[0].rejections[0].detail == "matches candidate old"
    assert "round 0" in verdicts[1].rejections[0].detail


def test_a_later_round_reuses_the_reduced_cells_of_earlier_candidates(monkeypatch):
    import tasks.metrics.matching as matching
    from tasks.metrics.matching import ReducedCache

    calls = []
    real = matching.reduce_structure
    monkeypatch.setattr(matching, "reduce_structure", lambda label, s: calls.append(label) or real(label, s))
    cache = ReducedCache(max_size=2)
    strained = rocksalt(4.5).get_primitive_structure()
    for round_index in range(2):  # each round's filter builds its index of earlier candidates afresh
        seen = MatchIndex(MatcherConfig(), cache=cache)
        seen.add("old", rocksalt().get_primitive_structure())
        seen.add("other", Structure(Lattice.cubic(3.0), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
        assert seen.find(real("new", strained)) == "old"  # the same decision either way
    assert calls == ["old", "other"]  # reduced in the first round only
    cache.put("third", real("third", strained))
    assert list(cache) == ["other", "third"]  # bounded: the least recently used went


def _rotation(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_collapsed_cell_is_rejected_without_building_a_neighbour_list():
    flat = Structure(Lattice([[4, 0, 0], [0, 4, 0], [0, 0, 1e-4]]), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
    rej = geometry_rejections(flat, FilterConfig())
    assert rej[0].check == "min_distance" and "collapsed cell" in rej[0].detail
