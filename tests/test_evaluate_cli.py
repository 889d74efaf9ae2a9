"""`matloop evaluate` end to end: files in, metrics JSON + per-structure CSV + plots out."""

import json

import pandas as pd
import pytest
from ase.io import write
from pymatgen.io.ase import AseAtomsAdaptor
from typer.testing import CliRunner

from flows.cli import app
from tests.test_metrics import cscl, perovskite, rocksalt, wurtzite
from tests.test_seeds import BAD_CIF


def _extxyz(path, structures, **info):
    frames = []
    for i, s in enumerate(structures):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.info["id"] = f"s{i}"
        for key, values in info.items():
            atoms.info[key] = values[i]
        frames.append(atoms)
    write(path, frames, format="extxyz")
    return path


def test_evaluate_cif_folder_against_extxyz_reference(tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    for i, s in enumerate([rocksalt(), rocksalt(4.25), cscl(), perovskite()]):
        s.to(filename=str(gen / f"g{i}.cif"))
    (gen / "broken.cif").write_text(BAD_CIF)
    ref = _extxyz(tmp_path / "ref.extxyz", [wurtzite(), cscl(2.65), perovskite(3.95)])
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["evaluate", str(gen), "--reference", str(ref), "--dataset", "perov5",
                                   "--workers", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_generated"] == 5 and metrics["n_parsed"] == 4
    assert metrics["uniqueness"] == pytest.approx(3 / 5) and metrics["novelty"] == pytest.approx(2 / 5)
    assert 0 <= metrics["cov_recall"] <= 1 and metrics["coverage_cutoffs"]["structure"] == 0.2
    assert metrics["coverage_cutoffs"]["comp_scaler"] == "cdvae"
    df = pd.read_csv(out / "structures.csv").set_index("id")
    assert df.loc["broken", "stability_note"].startswith("unparseable CIF")
    assert df.loc["g1", "duplicate_of"] == "g0" and df.loc["g2", "matches_reference"] == "s1"
    assert (out / "properties.png").stat().st_size > 0


@pytest.mark.slow
def test_evaluate_with_mlip_relaxation_and_hull(tmp_path):
    samples = _extxyz(tmp_path / "gen.extxyz", [rocksalt(4.4), cscl(2.7), wurtzite()])
    pd.DataFrame({"formula": ["MgO"], "formation_energy_per_atom": [-3.05]}).to_csv(tmp_path / "hull.csv",
                                                                                     index=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["evaluate", str(samples), "--relax", "mlip", "--mlip", "chgnet",
                                   "--elemental-refs", "mlip", "--hull", str(tmp_path / "hull.csv"),
                                   "--target", "e_above_hull=:0.1", "--no-coverage", "--workers", "2",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "structures.csv").set_index("id")
    assert df["relax_status"].str.startswith("converged").all()
    assert df["e_above_hull"].notna().all() and df["rmsd"].notna().any()
    rs = df.loc["s0"]
    assert rs["formation_energy_per_atom"] < -2.0  # MgO is strongly bound with CHGNet's own Mg and O2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_with_energy"] == 3 and metrics["stability"] is not None
    assert (out / "hull.png").exists()


def test_evaluate_bad_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(app, ["evaluate", str(empty), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "holds no .cif files" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not found" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(empty), "--relax", "dft", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "allowed: none, mlip" in res.output


@pytest.mark.parametrize("scaler, message", [("missing.json", "missing.json"), ("short.json", "132 means")])
def test_a_bad_composition_scaler_is_one_error_and_nothing_written(tmp_path, scaler, message):
    (tmp_path / "short.json").write_text('{"means": [0.0], "stds": [1.0]}')
    gen = tmp_path / "gen"
    gen.mkdir()
    rocksalt().to(filename=str(gen / "g0.cif"))
    res = CliRunner().invoke(app, ["evaluate", str(gen), "--dataset", "perov5", "--comp-scaler",
                                   str(tmp_path / scaler), "--out", str(tmp_path / "out")])
    assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()
