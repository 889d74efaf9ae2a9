"""Judging campaigns against held-out truth: held-out selection, hit kinds, curves and enhancement factors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.analysis.phase_diagram import PDEntry
from pymatgen.core import Composition, Lattice, Structure

from tasks.metrics.discovery import DiscoveryJudge, Relaxation, cumulative, curve_metrics, enhancement, held_out_phases
from tasks.metrics.hull import ReferenceHull

ELEMENTAL = {"Mg": -1.5, "O": -4.9, "Ca": -2.0}


def rocksalt(a: float = 4.2, cation: str = "Mg") -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def wurtzite(cation: str = "Mg") -> Structure:
    return Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.3, 5.2), [cation, "O"],
                                     [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]])


def hull() -> ReferenceHull:
    """MgO at -3.0 eV/atom on the hull; a MgO2 phase above it; Ca-O with CaO at -3.2."""
    return ReferenceHull([PDEntry(Composition("MgO"), -6.0), PDEntry(Composition("MgO2"), -3 * 1.5),
                          PDEntry(Composition("CaO"), -6.4)])


def relaxed(s: Structure, e_form: float, h: str, match: str = "") -> Relaxation:
    """A converged relaxation whose MLIP energy gives formation energy ``e_form`` (eV/atom)."""
    comp = s.composition.fractional_composition
    epa = e_form + sum(comp[el] * ELEMENTAL[el.symbol] for el in comp)
    return Relaxation(hash=h, round=0, formula=s.composition.reduced_formula, converged=True, energy_per_atom=epa,
                      structure=s, relaxed_match=match)


def test_held_out_phases_are_the_stable_full_system_structures():
    structures = pd.DataFrame({"id": ["rs", "wz", "rs-copy", "mgo2", "ca"],
                               "structure": [rocksalt(), wurtzite(), rocksalt(4.21), Structure(
                                   Lattice.cubic(4.0), ["Mg", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0.5]]),
                                   rocksalt(cation="Ca")]})
    energies = {"rs": -3.0, "wz": -2.9, "rs-copy": -3.0, "mgo2": -1.5, "ca": -3.2}
    found = held_out_phases(structures, energies, hull(), [["Mg", "O"]])
    assert list(found["id"]) == ["rs"]  # wurtzite is above the hull, the copy is the same phase, Ca is elsewhere
    assert found["system"].iloc[0] == "Mg-O" and abs(found["e_above_hull"].iloc[0]) < 1e-9


def test_judge_kinds_in_budget_order():
    judge = DiscoveryJudge(heldout=[("mp-rs", rocksalt())], reference=[("mp-rs", rocksalt()), ("mp-ca", rocksalt(
        cation="Ca"))], hull=hull(), elemental=ELEMENTAL, threshold=0.1)
    o2 = Structure(Lattice.cubic(8.0), ["O", "O"], [[0, 0, 0], [0, 0, 0.15]])
    new = Structure.from_spacegroup("Pm-3m", Lattice.cubic(2.6), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    table = judge.judge([
        relaxed(rocksalt(4.25), -2.95, "a"),  # rediscovers the held-out phase (StructureMatcher, volume scaled)
        relaxed(rocksalt(4.3), -2.9, "b"),  # the same phase again
        relaxed(new, -2.95, "c"),  # CsCl-type MgO at 0.05 above the hull: stable, unique, novel
        relaxed(new, -2.95, "d"),  # its duplicate
        relaxed(wurtzite(), -2.5, "e"),  # new but 0.5 above the hull
        relaxed(o2, 0.0, "f"),  # an elemental cell on the hull: reported apart
        Relaxation(hash="g", round=1, formula="MgO", converged=False),
        relaxed(wurtzite(), -2.95, "h", match="ase:known"),  # the campaign matched it to one of its known phases
        relaxed(rocksalt(cation="Ca"), -3.1, "i"),
    ])
    assert list(table["kind"]) == ["rediscovery", "repeat", "sun", "duplicate", "unstable", "elemental", "failed",
                                   "duplicate", "known"]
    assert table["e_above_hull"].iloc[2] == pytest.approx(0.05)
    assert list(table["k"]) == list(range(1, 10)) and table["match"].iloc[0] == "mp-rs"
    assert not table["new_composition"].iloc[2]  # MgO is in the table: a polymorph, not a new composition


def test_known_match_of_the_campaign_is_not_novel():
    judge = DiscoveryJudge([], [], hull(), ELEMENTAL)
    table = judge.judge([relaxed(wurtzite(), -2.95, "x", match="aflow:12")])
    assert list(table["kind"]) == ["known"]


def test_curves_stay_flat_after_the_last_relaxation_and_metrics_count_the_budget_only():
    kinds = ["failed", "sun", "unstable", "rediscovery", "sun"]
    assert cumulative(kinds, 7).tolist() == [0, 1, 1, 2, 3, 3, 3]
    assert cumulative(kinds, 3).tolist() == [0, 1, 1]
    assert cumulative([], 3).tolist() == [0, 0, 0]
    m = curve_metrics(kinds, 4)
    assert m["spent"] == 4 and m["hits"] == 2 and m["sun"] == 1 and m["rediscovery"] == 1
    assert m["hits_per_100"] == 50.0 and m["auc_hits"] == pytest.approx(np.mean([0, 1, 1, 2]))
    short = curve_metrics(["sun"], 4)  # an arm that ran dry after one relaxation
    assert short["spent"] == 1 and short["hits_per_100"] == 100.0 and short["auc_hits"] == 1.0


def test_enhancement_factor():
    e = enhancement([2, 4, 3], [1, 2, 0])
    assert e["ratio_of_means"] == pytest.approx(3.0)
    assert e["pairs"] == 2 and e["mean_of_ratios"] == pytest.approx(2.0) and e["std_of_ratios"] == 0.0
    assert e["off_zero_on_positive"] == 1 and e["both_zero"] == 0
    assert enhancement([1, 1], [0, 0])["ratio_of_means"] is None


def test_a_campaign_match_to_one_of_its_own_candidates_leaves_the_first_one_a_hit():
    """The campaign matches in proposal order, the judge reads in budget order (round, hash): a structure whose
    relaxed_match names another candidate of the campaign is judged by the judge's own uniqueness, so one of
    the two stays a hit."""
    judge = DiscoveryJudge([], [], hull(), ELEMENTAL)
    new = Structure.from_spacegroup("Pm-3m", Lattice.cubic(2.6), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    table = judge.judge([relaxed(new, -2.95, "aaa", match="zzz"), relaxed(new, -2.95, "zzz")])
    assert list(table["kind"]) == ["sun", "duplicate"]
