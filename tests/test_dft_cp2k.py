"""Real DFT: CP2K through atomate2 in micro-campaigns (``dft.backend: local``), a forced SCF failure that does
not fail its round and is rerun with corrected settings, an element without a basis, the band gap of MgO against
its PBE reference, and VASP flows built and serialised with MP input sets (VASP itself cannot run here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from conf.dft import DFTConfig
from flows.campaign import run_campaign, start_campaign
from flows.cli import app
from tasks.dft.calc import drive
from tasks.store import Store
from tests.conftest import micro_config

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("cp2k.psmp") is None, reason="CP2K is not installed (apt cp2k)")]

DFT_ON = {"rounds": 1, "dft.backend": "local", "dft.selection.per_round": 1}


@pytest.fixture(scope="session")
def dft_campaign(prefect_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dft")
    cfg = micro_config(tmp, **DFT_ON)
    cid = start_campaign(cfg)
    run_campaign(cfg.store_url(), cid)
    return cfg, cid


def test_local_cp2k_energies_land_in_the_store(dft_campaign):
    cfg, cid = dft_campaign
    store = Store(cfg.store_url())
    assert store.campaign(cid).status == "completed"
    calcs = store.dft_calcs(cid, with_references=True)
    cands = [c for c in calcs if c.kind == "candidate"]
    refs = {c.label: c for c in calcs if c.kind == "reference"}
    assert len(cands) == 1 and set(refs) == {"element:Mg", "element:O"}
    for c in calcs:
        assert c.state == "completed", c.reason
        assert c.energy < 0 and c.energy_per_atom == pytest.approx(c.energy / len(Structure.from_dict(
            json.loads(c.final_structure))))
        assert c.code_version.startswith("CP2K") and c.scf_converged and c.wall_time_s > 0
        assert len(c.forces) == len(json.loads(c.final_structure)["sites"]) and len(c.stress) == 3
        assert c.settings_hash.startswith("cp2k-") and c.job_id and (Path(c.calc_dir) / "result.json").is_file()
    assert all(r.campaign_id == "" for r in refs.values())  # shared by every campaign with these settings
    props = {(p.name, p.source) for p in store.properties(cid) if p.hash == cands[0].label}
    assert {("energy_per_atom", "dft"), ("formation_energy_per_atom", "dft"), ("band_gap", "dft")} <= props
    assert cands[0].band_gap > 2.5  # an Mg-O rock-salt-like cell is an insulator (hcp Mg on this coarse mesh
    # shows a spurious 0.5 eV: the gap is sampled at the SCF's k-points only, see tasks/dft/bands.py)
    summary = store.round(cid, 0).summary["dft"]
    assert summary["completed"] == 1 and summary["mae_pairs"] == 1
    assert 0 <= summary["mae_formation_energy_per_atom"] < 1.5  # eV/atom: CHGNet vs PBE/DZVP on one cell
    res = CliRunner().invoke(app, ["dft", "ls", cid, "--store", cfg.store_url()])
    assert res.exit_code == 0 and "completed" in res.output and "element:Mg" in res.output
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # the Prefect tag limit bounding concurrent calculations
        assert client.read_concurrency_limit_by_tag("dft").concurrency_limit == cfg.dft.concurrency


def test_forced_scf_failure_keeps_the_round_and_rerun_with_corrected_settings_completes(dft_campaign):
    ok_cfg, ok_cid = dft_campaign
    store = Store(ok_cfg.store_url())
    cfg = micro_config(Path(ok_cfg.output_dir).parent, **DFT_ON, **{
        "name": "scf-fail", "dft.cp2k.max_scf": 1, "dft.cp2k.eps_scf": 1e-10, "dft.cp2k.max_errors": 0})
    cid = start_campaign(cfg)
    run_campaign(cfg.store_url(), cid)
    assert store.campaign(cid).status == "completed" and store.round(cid, 0).status == "completed"
    (failed,) = store.dft_calcs(cid, ["failed"])
    assert failed.reason and failed.energy is None
    assert store.round(cid, 0).summary["dft"]["failed"] == 1
    res = CliRunner().invoke(app, ["dft", "ls", cid, "--state", "failed", "--store", cfg.store_url()])
    assert res.exit_code == 0 and failed.label in res.output

    refs_before = {r.id for r in store.dft_calcs(ok_cid, with_references=True) if r.kind == "reference"}
    res = CliRunner().invoke(app, ["dft", "rerun", cid, "--state", "failed", "--store", cfg.store_url(),
                                   "--set", "dft.cp2k.max_scf=50", "--set", "dft.cp2k.eps_scf=1e-6",
                                   "--set", "dft.cp2k.max_errors=5"])
    assert res.exit_code == 0, res.output
    row = store.dft_calc(failed.id)
    assert row.state == "completed" and row.energy < 0 and row.settings["max_scf"] == 50
    assert row.history[0]["state"] == "failed" and row.history[0]["reason"] == failed.reason
    # corrected settings equal the first campaign's: its elemental references are reused, not recomputed
    assert row.settings_hash == store.dft_calcs(ok_cid)[0].settings_hash
    refs_after = {r.id for r in store.dft_calcs(cid, ["completed"], with_references=True) if r.kind == "reference"}
    assert refs_after == refs_before
    assert store.round(cid, 0).summary["dft"]["completed"] == 1
    props = {(p.name, p.source) for p in store.properties(cid) if p.hash == row.label}
    assert ("formation_energy_per_atom", "dft") in props
    res = CliRunner().invoke(app, ["dft", "rerun", cid, "--state", "completed", "--store", cfg.store_url()])
    assert res.exit_code == 2 and "allowed: failed, lost" in res.output


def test_element_without_basis_fails_that_calculation_only(dft_campaign, tmp_path):
    cfg, _ = dft_campaign
    store = Store(cfg.store_url())
    good = Structure(Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    bad = Structure(Lattice.cubic(3.0), ["Pu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    settings = {"code": "cp2k", **cfg.dft.cp2k.model_dump(mode="json")}
    ids = store.queue_dft([dict(campaign_id="manual", label=label, kind="candidate", round_index=0,
                                structure=json.dumps(s.as_dict()), settings=settings, settings_hash="cp2k-manual",
                                backend="local", calc_dir=str(tmp_path / label)) for label, s in
                           (("bad", bad), ("good", good))])
    rows = [drive(store, i, DFTConfig(backend="local"), poll_s=0.5) for i in ids]
    assert rows[0].state == "failed" and "['Pu']" in rows[0].reason and "basis" in rows[0].reason
    assert rows[1].state == "completed" and rows[1].energy < 0


def test_rock_salt_mgo_band_gap_matches_the_pbe_reference(dft_campaign, tmp_path):
    """PBE gap of MgO: 4.45 eV in the Materials Project (mp-1265, direct at Gamma); DZVP-MOLOPT-SR at 300 Ry and
    a 2x2x2 Gamma-centred mesh give about 4.25 eV here."""
    cfg, _ = dft_campaign
    store = Store(cfg.store_url())
    mgo = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
    settings = {"code": "cp2k", **cfg.dft.cp2k.model_dump(mode="json")}
    (cid,) = store.queue_dft([dict(campaign_id="manual", label="MgO", kind="candidate", round_index=0,
                                   structure=json.dumps(mgo.get_primitive_structure().as_dict()), settings=settings,
                                   settings_hash="cp2k-gap", backend="local", calc_dir=str(tmp_path / "MgO"))])
    row = drive(store, cid, DFTConfig(backend="local"), poll_s=0.5)
    assert row.state == "completed", row.reason
    assert row.band_gap == pytest.approx(4.45, abs=0.5)


def test_vasp_flow_is_built_and_serialised_with_mp_input_sets():
    from jobflow import Flow
    from monty.json import MontyDecoder
    from pymatgen.io.vasp.sets import MPRelaxSet, MPStaticSet

    from tasks.dft.inputs import vasp_flow

    s = Structure(Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    flow = vasp_flow(s)
    assert isinstance(flow, Flow) and len(flow.jobs) == 2
    text = json.dumps(flow.as_dict())
    again = json.loads(text, cls=MontyDecoder)
    assert isinstance(again, Flow) and [j.name for j in again.jobs] == [j.name for j in flow.jobs]
    relax_maker = flow.jobs[0].jobs[0].maker if isinstance(flow.jobs[0], Flow) else flow.jobs[0].maker
    static_maker = flow.jobs[-1].maker
    assert isinstance(relax_maker.input_set_generator, MPRelaxSet)  # atomate2's MP GGA sets (pymatgen's MP sets)
    assert isinstance(static_maker.input_set_generator, MPStaticSet)
    incar = relax_maker.input_set_generator.get_input_set(s, potcar_spec=True).incar
    assert incar["ENCUT"] == MPRelaxSet(s).incar["ENCUT"] and incar["ISPIN"] == 2
