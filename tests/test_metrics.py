"""Generation metrics on hand-made cases with known answers, and fast vs exhaustive matching."""

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, Lattice, Structure

from conf.schema import MatcherConfig, TargetRange
from tasks.errors import EvaluationError
from tasks.metrics.coverage import coverage, fingerprints, load_comp_scaler
from tasks.metrics.distributions import property_satisfaction, relaxation_rmsd, wasserstein
from tasks.metrics.hull import ReferenceHull, formation_energy_per_atom
from tasks.metrics.matching import fast_decisions, pairwise_decisions
from tasks.metrics.samples import EvaluationOptions, evaluate_samples
from tasks.metrics.validity import composition_valid, structure_valid


def rocksalt(a=4.21, sp=("Mg", "O")):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(sp), [[0, 0, 0], [.5, .5, .5]])


def cscl(a=2.6, sp=("Mg", "O")):
    return Structure(Lattice.cubic(a), list(sp), [[0, 0, 0], [.5, .5, .5]])


def wurtzite(sp=("Mg", "O")):
    return Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.3, 5.2), list(sp), [[1 / 3, 2 / 3, 0],
                                                                                          [1 / 3, 2 / 3, 0.38]])


def perovskite(a=3.9, sp=("Sr", "Ti", "O")):
    return Structure(Lattice.cubic(a), [sp[0], sp[1], sp[2], sp[2], sp[2]],
                     [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])


def test_structural_and_compositional_validity():
    assert structure_valid(rocksalt())
    assert not structure_valid(Structure(Lattice.cubic(5), ["Mg", "O"], [[0, 0, 0], [0.08, 0, 0]]))  # 0.4 Å
    assert structure_valid(Structure(Lattice.cubic(3), ["Cu"], [[0, 0, 0]]))  # one site: no pair
    assert not structure_valid(Structure(Lattice.cubic(0.4), ["Cu"], [[0, 0, 0]]))  # 0.064 Å3 < 0.1
    assert composition_valid(Composition("NaCl")) and not composition_valid(Composition("NaCl2"))
    assert composition_valid(Composition("Cu3Au"))  # alloy
    # CDVAE's SMACT 2.2 list (smact14) allows Mg+1; SMACT 4's icsd24 default does not
    assert composition_valid(Composition("Mg2O"), "smact14") and not composition_valid(Composition("Mg2O"), "icsd24")


def _tricky_set():
    rng = np.random.default_rng(4)
    bases = [rocksalt(), cscl(), wurtzite(), rocksalt(5.6, ("Na", "Cl")), perovskite(),
             perovskite(4.0, ("Ba", "Ti", "O")), rocksalt(4.6, ("Ca", "O"))]
    out = []
    for b in bases:
        out.append(b)
        theta = rng.uniform(0, np.pi)
        rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
        idx = rng.permutation(len(b))
        out.append(Structure(Lattice(b.lattice.matrix @ rot.T), [b.species[i] for i in idx], b.frac_coords[idx]))
        sc = b.copy()
        sc.make_supercell([2, 1, 1])
        out.append(sc)
        out.append(Structure(Lattice(b.lattice.matrix @ (np.eye(3) + rng.normal(0, 0.02, (3, 3)))), b.species,
                             b.frac_coords))
        out.append(Structure(Lattice(b.lattice.matrix @ (np.eye(3) + rng.normal(0, 0.15, (3, 3)))), b.species,
                             b.frac_coords + rng.normal(0, 0.05, b.frac_coords.shape)))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def test_fast_matching_agrees_with_exhaustive_pairwise():
    samples = _tricky_set()
    refs = [rocksalt(4.3), perovskite(3.95), wurtzite(("Zn", "O"))]
    exhaustive = pairwise_decisions(samples, refs, MatcherConfig())
    assert fast_decisions(samples, refs, MatcherConfig()) == exhaustive
    assert fast_decisions(samples, refs, MatcherConfig(), workers=2, min_parallel=1) == exhaustive
    assert 0 < sum(not d.unique for d in exhaustive) < len(samples)
    assert 0 < sum(not d.novel for d in exhaustive) < len(samples)


def test_rotated_permuted_copy_and_supercell_are_duplicates():
    base = rocksalt()
    rot = Structure(Lattice(base.lattice.matrix[[1, 2, 0]]), list(reversed(base.species)),
                    list(reversed(base.frac_coords[:, [1, 2, 0]])))
    sc = base.copy()
    sc.make_supercell([1, 1, 2])
    d = fast_decisions([base, rot, sc, cscl()], [], MatcherConfig())
    assert [x.duplicate_of for x in d] == [None, 0, 0, None]


def test_fast_matching_agrees_on_mp20_variants(shared_data):
    df = pd.read_csv(shared_data / "mp_20_subset" / "mp20_train_val_rows.csv.gz").head(60)
    base = [Structure.from_str(c, fmt="cif") for c in df.cif]
    rng = np.random.default_rng(0)
    samples = []
    for s in base:
        samples.append(s)
        strained = Structure(Lattice(s.lattice.matrix @ (np.eye(3) + rng.normal(0, 0.03, (3, 3)))), s.species,
                             s.frac_coords)
        samples.append(strained)
        sc = s.copy()
        sc.make_supercell([1, 2, 1])
        samples.append(sc)
    assert fast_decisions(samples, base[:30], MatcherConfig(), workers=2, min_parallel=1) == pairwise_decisions(
        samples, base[:30], MatcherConfig())


def test_reference_hull_on_and_above_and_missing_elements(tmp_path):
    table = pd.DataFrame({"pretty_formula": ["MgO", "Mg2O"], "formation_energy_per_atom": [-3.0, -1.0]})
    table.to_csv(tmp_path / "hull.csv.gz", index=False)
    hull = ReferenceHull.from_table(tmp_path / "hull.csv.gz")
    assert hull.e_above_hull(Composition("MgO"), -3.0) == pytest.approx(0.0, abs=1e-9)
    assert hull.e_above_hull(Composition("MgO"), -3.2) == pytest.approx(-0.2)
    assert hull.e_above_hull(Composition("Mg2O"), -1.0) == pytest.approx(1.0)  # hull: Mg + MgO at -2.0
    with pytest.raises(EvaluationError, match=r"\['Si'\]"):
        hull.e_above_hull(Composition("MgSiO3"), -3.0)
    assert formation_energy_per_atom(Composition("MgO"), -6.0, {"Mg": -1.5, "O": -4.9}) == pytest.approx(-2.8)


def test_evaluate_samples_end_to_end(tmp_path):
    table = pd.DataFrame({"pretty_formula": ["MgO"], "formation_energy_per_atom": [-3.0]})
    table.to_csv(tmp_path / "hull.csv", index=False)
    hull = ReferenceHull.from_table(tmp_path / "hull.csv")
    samples = pd.DataFrame({
        "id": ["on-hull", "copy", "above", "silicate", "bad"],
        "structure": [cscl(), cscl(2.62), wurtzite(), perovskite(sp=("Mg", "Si", "O")), None],
        "error": ["", "", "", "", "unparseable CIF: boom"],
        "formation_energy_per_atom": [-3.0, -2.9, -2.5, -3.1, np.nan],
        "band_gap": [4.0, 4.0, 0.5, 6.0, np.nan]})
    references = pd.DataFrame({"id": ["ref-ws"], "structure": [wurtzite()], "error": [""]})
    opts = EvaluationOptions(targets={"band_gap": TargetRange(min=3.0)}, coverage=False)
    metrics, df = evaluate_samples(samples, references, hull, None, opts)
    row = df.set_index("id")
    assert row.loc["on-hull", "e_above_hull"] == pytest.approx(0.0, abs=1e-9) and row.loc["on-hull", "sun"]
    assert row.loc["copy", "duplicate_of"] == "on-hull" and not row.loc["copy", "sun"]
    assert row.loc["above", "matches_reference"] == "ref-ws" and not row.loc["above", "novel"]
    assert np.isnan(row.loc["silicate", "e_above_hull"]) and "Si" in row.loc["silicate", "stability_note"]
    assert not row.loc["bad", "valid"] and row.loc["bad", "stability_note"].startswith("unparseable")
    assert metrics["n_generated"] == 5 and metrics["n_parsed"] == 4
    assert metrics["uniqueness"] == pytest.approx(3 / 5) and metrics["sun"] == pytest.approx(1 / 5)
    assert metrics["property_satisfaction.band_gap"] == pytest.approx(3 / 5)
    with pytest.raises(EvaluationError, match="no generated structures"):
        evaluate_samples(samples.iloc[:0], references, hull, None, opts)


def test_cdvae_composition_scaler(tmp_path):
    means, stds = load_comp_scaler()  # CDVAE's constants, shipped with the package
    assert means.shape == stds.shape == (132,) and (stds > 0).all()
    assert means[0] == pytest.approx(21.194441759304013) and stds[-1] == pytest.approx(85.980205895116)
    a, b = fingerprints([rocksalt()]), fingerprints([perovskite()])
    # the reference-fitted scaler (zero spread -> unit std) and CDVAE's give different distance scales
    cut = float(np.linalg.norm(np.nan_to_num((a[0][1] - means) / stds) - np.nan_to_num((b[0][1] - means) / stds)))
    cut *= 1.01
    assert coverage(a, b, 1e6, cut, (means, stds))["cov_precision"] == 1.0
    assert coverage(a, b, 1e6, cut * 0.98, (means, stds))["cov_precision"] == 0.0
    assert coverage(a, b, 1e6, cut)["cov_precision"] != coverage(a, b, 1e6, cut, (means, stds))["cov_precision"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"means": [0.0], "stds": [1.0]}')
    with pytest.raises(ValueError, match="132 means"):
        load_comp_scaler(bad)


def test_coverage_wasserstein_satisfaction_rmsd():
    a = [rocksalt(), cscl(), perovskite()]
    fp = fingerprints(a)
    assert coverage(fp, fp, 0.2, 4.0) == {"cov_recall": 1.0, "cov_precision": 1.0}
    half = coverage(fp[:1] + [None], fp, 1e-6, 1e-6)
    assert half["cov_recall"] == pytest.approx(1 / 3) and half["cov_precision"] == pytest.approx(1 / 2)
    assert wasserstein([1, 2, 3], [1, 2, 3]) == 0.0 and wasserstein([1, 2, 3], [2, 3, 4]) == pytest.approx(1.0)
    assert wasserstein([], [1.0]) is None
    assert property_satisfaction([0.5, 2.0, None], TargetRange(min=1.0), 4) == 0.25
    moved = rocksalt()
    moved.translate_sites([0], [0.01, 0, 0])
    assert relaxation_rmsd(rocksalt(), rocksalt()) == pytest.approx(0.0, abs=1e-8)
    assert 0 < relaxation_rmsd(rocksalt(), moved) < 0.05
