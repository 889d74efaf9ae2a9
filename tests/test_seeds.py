"""Seed loaders and the campaign seed set: bad entries skipped with a reason, empty sets refused."""

import logging

import pandas as pd
import pytest
from ase.build import bulk
from ase.io import write
from pymatgen.core import Lattice, Structure

from conf.schema import Decoration, SeedsConfig, SeedSource, TargetConfig
from tasks.errors import SeedError
from tasks.seeds import load_cif_dir, load_extxyz, load_mp20_csv
from tasks.seedset import build_seed_set

ROCKSALT = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
BAD_CIF = "data_broken\n_cell_length_a 4.2\nloop_\n_atom_site_label\nthis is not a cif"


def test_mp20_csv_skips_malformed_cif_with_reason(tmp_path, caplog):
    path = tmp_path / "seeds.csv"
    pd.DataFrame({"material_id": ["mp-1", "mp-bad"], "cif": [ROCKSALT.to(fmt="cif"), BAD_CIF],
                  "formation_energy_per_atom": [-3.0, 0.0]}).to_csv(path, index=False)
    seeds, skipped = load_mp20_csv(path)
    assert [s.id for s in seeds] == ["mp-1"] and seeds[0].formula == "MgO"
    assert skipped[0][0] == "mp-bad" and "unparseable CIF" in skipped[0][1]
    with caplog.at_level(logging.WARNING, logger="matloop.seeds"):
        cfg = SeedsConfig(sources=[SeedSource(kind="csv", path=path)])
        seed_set = build_seed_set(cfg, TargetConfig(chemical_system="Mg-O"))
    assert "skipped seed mp-bad" in caplog.text
    assert {s.formula for s in seed_set.known_phases} >= {"MgO", "Mg", "O2"}  # ASE references fill in elements


def test_cif_dir_and_extxyz(tmp_path):
    (tmp_path / "a.cif").write_text(ROCKSALT.to(fmt="cif"))
    (tmp_path / "b.cif").write_text(BAD_CIF)
    seeds, skipped = load_cif_dir(tmp_path)
    assert [s.id for s in seeds] == ["a"] and skipped[0][0] == "b.cif"
    frames = [bulk("Mg", "hcp", a=3.2, c=5.2), bulk("MgO", "rocksalt", a=4.2)]
    frames[1].info["id"] = "rs"
    write(tmp_path / "s.extxyz", frames, format="extxyz")
    seeds, _ = load_extxyz(tmp_path / "s.extxyz")
    assert [s.id for s in seeds] == ["s:0", "rs"]


def test_mp20_subset_from_shared_data(shared_data):
    seeds, skipped = load_mp20_csv(shared_data / "mp_20_subset" / "mp20_train_val_rows.csv.gz", limit=50)
    assert len(seeds) + len(skipped) == 50 and len(seeds) >= 48


def test_builtin_seed_set_for_default_system():
    cfg = SeedsConfig(known_phases=[Decoration(template="NaCl", species={"Na": "Mg", "Cl": "O"})])
    seed_set = build_seed_set(cfg, TargetConfig(chemical_system="Mg-Si-O"))
    formulas = {s.formula for s in seed_set.known_phases}
    assert {"Mg", "Si", "O2", "SiO2", "MgO"} <= formulas
    assert len(seed_set.templates) > 200
    assert any(s.id.startswith("decorated:") for s in seed_set.known_phases)


def test_empty_seed_set_is_refused(tmp_path):
    (tmp_path / "bad.cif").write_text(BAD_CIF)
    cfg = SeedsConfig(sources=[SeedSource(kind="cif_dir", path=tmp_path)])
    with pytest.raises(SeedError, match="seed set is empty"):
        build_seed_set(cfg, TargetConfig(chemical_system="Mg-O"))


def test_unknown_decoration_template_is_refused():
    cfg = SeedsConfig(known_phases=[Decoration(template="Xe7Kr", species={"Xe": "Mg"})])
    with pytest.raises(SeedError, match="no seed with formula 'Xe7Kr'"):
        build_seed_set(cfg, TargetConfig(chemical_system="Mg-O"))


def test_materials_project_source_explains_what_it_needs(monkeypatch):
    from tasks.seeds import load_materials_project

    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(SeedError, match="mp-api|API key"):
        load_materials_project(["Mg", "O"], None)
