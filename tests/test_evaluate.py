"""Formation energies and hull distances on hand-made energies with known answers."""

import pytest
from pymatgen.core import Lattice, Structure

from conf.schema import MatcherConfig, TargetRange
from tasks.errors import EvaluationError
from tasks.stability import evaluate_candidates, meets_targets, relaxed_matches

REFS = [("A", "Mg", -1.5), ("B", "O2", -4.9), ("C", "MgO2", -5.0)]


def test_on_hull_and_above_hull():
    # MgO at -6.0 eV/atom: formation energy -6.0 - (-1.5 - 4.9)/2 = -2.8 eV/atom, on the hull
    cands = [("h1", "MgO", -6.0), ("h2", "Mg2O", -4.0)]
    evals, stable = evaluate_candidates(REFS, cands, 0.1, {"e_above_hull": TargetRange(max=0.1)})
    on, above = evals
    assert on.formation_energy_per_atom == pytest.approx(-2.8)
    assert on.e_above_hull == pytest.approx(0.0, abs=1e-9) and on.stable and on.meets_targets
    # Mg2O hull: 1/3 Mg + 2/3 MgO at -1.5/3 + 2/3*-6.0 = -4.5 -> 0.5 eV/atom above
    assert above.e_above_hull == pytest.approx(0.5) and not above.stable and not above.meets_targets
    assert "MgO" in stable and "Mg2O" not in stable


def test_exactly_on_the_hull_when_a_reference_is_recomputed():
    evals, _ = evaluate_candidates(REFS, [("h", "MgO2", -5.0)], 0.0, {})
    assert evals[0].e_above_hull == pytest.approx(0.0, abs=1e-9) and evals[0].stable


def test_missing_elemental_reference_is_a_clear_error():
    with pytest.raises(EvaluationError, match=r"\['Si'\]"):
        evaluate_candidates(REFS, [("h", "MgSiO3", -7.0)], 0.1, {})


def test_targets_on_missing_properties_are_not_met():
    assert not meets_targets({"e_above_hull": 0.0}, {"band_gap": TargetRange(min=1.0)})
    assert meets_targets({"e_above_hull": 0.0}, {"e_above_hull": TargetRange(max=0.1)})


def test_relaxed_structures_matching_known_phases_or_earlier_candidates():
    rs = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
    cs = Structure(Lattice.cubic(2.6), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
    matches = relaxed_matches([("seed-rs", rs)], [("a", rs.get_primitive_structure()), ("b", cs), ("c", cs)],
                              MatcherConfig())
    assert matches == {"a": "seed-rs", "b": "", "c": "b"}


def test_matching_only_the_new_candidates_gives_the_same_answer():
    """The evaluate step matches only a round's new relaxations, with the earlier new ones in the pool: the same
    as matching every candidate from scratch."""
    rs = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
    cs = Structure(Lattice.cubic(2.6), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
    zb = Structure.from_spacegroup("F-43m", Lattice.cubic(4.6), ["Mg", "O"], [[0, 0, 0], [.25, .25, .25]])
    known = [("seed-rs", rs)]
    cands = [("a", rs.get_primitive_structure()), ("b", cs), ("c", zb), ("d", cs), ("e", zb), ("f", rs)]
    whole = relaxed_matches(known, cands, MatcherConfig())
    first = relaxed_matches(known, cands[:3], MatcherConfig())
    earlier = [(h, s) for h, s in cands[:3] if first[h] == ""]
    assert {**first, **relaxed_matches(known, cands[3:], MatcherConfig(), earlier)} == whole
    assert whole == {"a": "seed-rs", "b": "", "c": "", "d": "b", "e": "c", "f": "seed-rs"}
