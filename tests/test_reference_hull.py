"""Campaigns judged against a reference hull, seeds and training data kept away from held-out phases."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from conf.schema import Decoration, SeedsConfig, SeedSource, TargetConfig
from flows.cli import app
from tasks.metrics.hull import ReferenceHull, load_elemental_references
from tasks.seedset import build_seed_set
from tasks.stability import evaluate_on_reference, is_new_stable, mlip_elemental_energies
from tasks.store import Store
from tasks.train import drop_matching, load_training_table

ROCKSALT = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])


@pytest.fixture
def hull_csv(tmp_path):
    path = tmp_path / "hull.csv"
    pd.DataFrame({"material_id": ["a", "b"], "pretty_formula": ["MgO", "SiO2"],
                  "formation_energy_per_atom": [-3.0, -3.0]}).to_csv(path, index=False)
    return path


def test_evaluation_against_a_reference_hull(hull_csv):
    hull = ReferenceHull.from_table(hull_csv)
    elemental = {"Mg": -1.5, "O": -4.9, "Si": -5.4}
    cands = [("on", "MgO", -3.2 - 3.0), ("above", "Mg2O", (2 * -1.5 - 4.9) / 3 + 0.2), ("below", "MgO", -6.4)]
    ev = evaluate_on_reference(cands, hull, elemental, 0.1, {})
    assert ev[0].formation_energy_per_atom == pytest.approx(-3.0) and ev[0].e_above_hull == pytest.approx(0.0)
    assert ev[1].formation_energy_per_atom == pytest.approx(0.2) and ev[1].e_above_hull == pytest.approx(2.2)  # hull at Mg2O: -2.0
    assert ev[2].e_above_hull == pytest.approx(-0.2) and ev[2].stable  # below the known hull: negative
    assert [e.stable for e in ev] == [True, False, True]
    assert mlip_elemental_energies([("x", "O2", -4.8), ("y", "O2", -4.9), ("z", "MgO", -6)]) == {"O": -4.9}


def test_one_definition_of_a_hit():
    assert is_new_stable(0.05, "", "MgO", 0.1) and is_new_stable(-0.2, None, "MgO", 0.1)
    assert not is_new_stable(0.05, "decorated:aflow:12", "MgO", 0.1)  # relaxed into a known phase
    assert not is_new_stable(0.0, "", "O2", 0.1)  # elemental cells are references, never discoveries
    assert not is_new_stable(0.2, "", "MgO", 0.1) and not is_new_stable(None, "", "MgO", 0.1)
    assert not is_new_stable(float("nan"), "", "MgO", 0.1)


def test_elemental_references_from_matbench_entries_and_numbers(tmp_path):
    entries = tmp_path / "refs.json.gz"
    with gzip.open(entries, "wt") as fh:
        json.dump({"O": {"composition": {"O": 8}, "energy": -39.4, "correction": 0.0},
                   "Mg": {"energy_per_atom": -1.6}}, fh)
    assert load_elemental_references(entries) == {"O": pytest.approx(-4.925), "Mg": -1.6}
    numbers = tmp_path / "n.json"
    numbers.write_text('{"Mg": -1.5}')
    assert load_elemental_references(numbers) == {"Mg": -1.5}


@pytest.mark.parametrize("sets, message", [
    (["evaluate.reference_hull=/no/such/hull.csv"], "reference hull table not found: /no/such/hull.csv"),
    (["evaluate.reference_hull=HULL", "target.chemical_system=Ca-O"], "has no phase containing ['Ca']"),
    (["evaluate.reference_hull=HULL", "evaluate.elemental_references={Mg: -1.5}"], "no energy for ['O']"),
    (["evaluate.reference_hull=HULL", "evaluate.elemental_references=/no/refs.json"],
     "elemental references not found: /no/refs.json"),
    (["evaluate.elemental_references={Mg: -1.5, O: -4.9}"], "only used with reference_hull"),
    (["evaluate.reference_hull=GARBAGE"], "a hull table needs a formula column"),
])
def test_reference_hull_problems_fail_before_anything_is_written(config_file, hull_csv, tmp_path, sets, message):
    (tmp_path / "garbage.csv").write_text("a,b\n1,2\n")
    args = ["run", "--config", str(config_file), "--no-progress"]
    for s in sets:
        args += ["--set", s.replace("HULL", str(hull_csv)).replace("GARBAGE", str(tmp_path / "garbage.csv"))]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert message in res.output.replace("\n", " ") and "Traceback" not in res.output
    db = tmp_path / "out" / "matloop.db"
    assert not db.exists() or Store(f"sqlite:///{db}").campaigns() == []


def test_excluded_structures_leave_templates_and_known_phases(tmp_path):
    held = tmp_path / "heldout.csv"
    pd.DataFrame({"material_id": ["mp-1265"], "cif": [ROCKSALT.to(fmt="cif")]}).to_csv(held, index=False)
    cfg = SeedsConfig(known_phases=[Decoration(template="NaCl", species={"Na": "Mg", "Cl": "O"})],
                      exclude=[SeedSource(kind="csv", path=held)])
    seeds = build_seed_set(cfg, TargetConfig(chemical_system="Mg-O"))
    assert "MgO" not in {s.formula for s in seeds.known_phases}
    assert any("excluded: matches mp-1265" in reason for _, reason in seeds.skipped)
    kept = build_seed_set(cfg.model_copy(update={"exclude": []}), TargetConfig(chemical_system="Mg-O"))
    assert "MgO" in {s.formula for s in kept.known_phases}
    with pytest.raises(ValueError, match="not builtin"):
        SeedsConfig(exclude=[SeedSource(kind="builtin")])


def test_training_data_without_the_excluded_structures(tmp_path):
    data, held = tmp_path / "train.csv", tmp_path / "held.csv"
    other = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]])
    pd.DataFrame({"material_id": ["t1", "t2", "t3"], "cif": [ROCKSALT.to(fmt="cif"), other.to(fmt="cif"),
                                                              ROCKSALT.copy().scale_lattice(80).to(fmt="cif")]}
                 ).to_csv(data, index=False)
    pd.DataFrame({"material_id": ["h"], "cif": [ROCKSALT.to(fmt="cif")]}).to_csv(held, index=False)
    df, dropped = drop_matching(load_training_table([data], 20), [held])
    assert dropped == ["t1", "t3"] and list(df["id"]) == ["t2"]  # StructureMatcher scales volume


@pytest.mark.slow
def test_chgnet_energies_of_known_mp20_phases_lie_on_the_mp20_hull(shared_data):
    """The oracle of the discovery benchmark: CHGNet relaxations of stable MP-20 phases, formation energies against
    MP's elemental references, E_hull against MP-20's DFT hull table, within 0.1 eV/atom."""
    from conf.schema import RelaxConfig
    from tasks.metrics.hull import formation_energy_per_atom, load_reference_hull
    from tasks.metrics.relaxed import relax_structures
    from tasks.mlip import resolve_chgnet

    rows = pd.read_csv(shared_data / "mp_20_subset" / "mp20_train_val_rows.csv.gz")
    ids = ["mp-5488", "mp-4482", "mp-3953", "mp-7650", "mp-547792"]  # LiInO2 NaSbO3 CaCO3 RbScO2 KSbO3
    structures = [Structure.from_str(rows.loc[rows["material_id"] == i, "cif"].iloc[0], fmt="cif") for i in ids]
    hull = load_reference_hull(shared_data / "lemat_genbench" / "mp20_hulls" / "mp20_mlip_energies_merged.csv.gz")
    refs = load_elemental_references(shared_data / "matbench_discovery" /
                                     "2023-02-07-mp-elemental-reference-entries.json.gz")
    results = relax_structures(structures, RelaxConfig(backend="chgnet"), resolve_chgnet("0.3.0", "cpu"), workers=2)
    for mid, s, r in zip(ids, structures, results):
        assert r.status == "converged", (mid, r.reason)
        ehull = hull.e_above_hull(s.composition, formation_energy_per_atom(s.composition, r.energy_per_atom, refs))
        assert abs(ehull) <= 0.1, (mid, s.composition.reduced_formula, ehull)
