"""The band-gap benchmark's judge: a hit is a relaxed, stable candidate whose composition's Materials Project gap
lies in the window; the campaign's own predicted gap is reported beside it, never used as the truth."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.band_gap import in_system, judge, parse_args, summarize


def _frame() -> pd.DataFrame:
    return pd.DataFrame([
        {"hash": "a", "formula": "LiVO3", "round": 0, "e_above_hull": 0.02, "relax_status": "converged",
         "band_gap": 2.5},
        {"hash": "b", "formula": "VO2", "round": 0, "e_above_hull": 0.05, "relax_status": "converged",
         "band_gap": 2.0},  # predicted in the window, truly a metal: a predicted hit only
        {"hash": "c", "formula": "Li3VO4", "round": 1, "e_above_hull": 0.30, "relax_status": "converged",
         "band_gap": 2.2},  # unstable
        {"hash": "d", "formula": "Li9V2O8", "round": 1, "e_above_hull": 0.0, "relax_status": "converged",
         "band_gap": 2.2},  # no truth for this composition: not a hit
        {"hash": "e", "formula": "LiV2O5", "round": 1, "e_above_hull": None, "relax_status": "failed",
         "band_gap": None},
        {"hash": "f", "formula": "V2O5", "round": 2, "e_above_hull": None, "relax_status": None,
         "band_gap": None},  # never relaxed: not counted
    ])


def test_hits_are_stable_relaxations_whose_true_gap_is_in_the_window():
    truth = {"LiVO3": 2.8, "VO2": 0.0, "Li3VO4": 4.1, "LiV2O5": 0.3, "V2O5": 2.3}
    rows = judge(_frame(), truth, 1.5, 3.0, 0.1)
    assert [r["hash"] for r in rows] == ["a", "b", "c", "d", "e"]
    assert [r["hit"] for r in rows] == [True, False, False, False, False]
    assert [r["predicted_hit"] for r in rows] == [True, True, False, True, False]
    s = summarize(rows, ["LiVO3", "VO2", "V2O5", "Li9V2O8"], truth, 1.5, 3.0)
    assert (s["relaxed"], s["stable"], s["hits"], s["predicted_hits"], s["stable_with_truth"]) == (5, 3, 1, 3, 2)
    assert s["hits_per_100"] == pytest.approx(20.0) and s["hit_formulas"] == ["LiVO3"]
    assert (s["proposals"], s["proposals_with_truth"], s["proposals_in_window"]) == (4, 3, 2)
    assert s["predictor_mae"] == pytest.approx((0.3 + 2.0 + 1.9) / 3)  # a, b, c (d: no truth, e: no prediction)


def test_arguments_are_checked_and_sub_systems_count_as_in_system(tmp_path):
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("pretty_formula,band_gap,formation_energy_per_atom\nLiVO3,2.8,-2.0\n")
    with pytest.raises(SystemExit):
        parse_args(["--arms", "guided+learning,bogus", "--gaps", str(gaps)])
    with pytest.raises(SystemExit):
        parse_args(["--low", "3", "--high", "1", "--gaps", str(gaps)])
    assert parse_args(["--gaps", str(gaps), "--workdir", str(tmp_path)]).arms[0] == "guided+learning"
    assert in_system("V2O5", {"Li", "V", "O"}) and not in_system("NaVO3", {"Li", "V", "O"})


def test_the_dft_check_picks_stable_distinct_small_cells_hits_first():
    from pymatgen.core import Lattice, Structure

    from benchmarks.band_gap_dft import pick

    def cell(n: int) -> dict:
        return Structure(Lattice.cubic(3.0 + n), ["Li"] * n, [[i / n, 0, 0] for i in range(n)]).as_dict()

    rows = pd.DataFrame([
        {"hash": "big", "formula": "LiVO3", "arm": "x", "stable": True, "hit": True, "truth_gap": 2.8},
        {"hash": "small", "formula": "LiVO3", "arm": "x", "stable": True, "hit": True, "truth_gap": 2.8},
        {"hash": "metal", "formula": "LiVO2", "arm": "y", "stable": True, "hit": False, "truth_gap": 0.0},
        {"hash": "new", "formula": "Li2VO3", "arm": "y", "stable": True, "hit": False, "truth_gap": float("nan")},
        {"hash": "unstable", "formula": "LiVO4", "arm": "y", "stable": False, "hit": False, "truth_gap": None},
    ])
    structures = {"big": {"structure": cell(10)}, "small": {"structure": cell(5)}, "metal": {"structure": cell(4)},
                  "new": {"structure": cell(20)}}
    got = pick(rows, 3, 12, structures)
    assert [g["hash"] for g in got] == ["small", "metal"]  # one per formula, hit first; 20 sites is too big
    assert got[0]["truth_gap"] == 2.8 and got[1]["sites"] == 4
