"""Lab results: strict validation with line numbers, all-or-nothing writes (or --skip-invalid with a reject
file), unit conversion, idempotent re-ingestion, candidate matching by hash/id/CIF/formula, the allowed input
folder, and measured values taking precedence in the next feedback. Real SQLite store; one test runs the
ingestion flow through the CLI under Prefect."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from conf.schema import FeedbackConfig, TargetRange
from flows.cli import app
from tasks.candidate import Candidate, Provenance
from tasks.feedback import Outcome, compute_feedback, lab_score
from tasks.lab.ingest import ingest_lab_file
from tasks.lab.records import LabInputError, parse_row
from tasks.results import Conditions
from tasks.seeds import SeedSet
from tasks.store import Store
from tests.conftest import micro_config

HEADER = "candidate,cif,formula,property,value,unit,uncertainty,sample_id,date,notes\n"


def _structures():
    mgo = Structure(Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mgo2 = Structure(Lattice.cubic(4.8), ["Mg", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])
    return {"MgO": mgo, "MgO2": mgo2}


@pytest.fixture
def campaign(tmp_path):
    cfg = micro_config(tmp_path)
    store = Store(cfg.store_url())
    cid = store.create_campaign(cfg, SeedSet(known_phases=[], templates=[]))
    cands = [Candidate.create(s, Provenance(generator="test", generator_identity="t", round_index=0, arm=name,
                                            key=name, conditions_hash="c")) for name, s in _structures().items()]
    cond = Conditions(round_index=0, chemical_system=["Mg", "O"], oxidation_states={"Mg": 2, "O": -2},
                      include_subsystems=True, max_atoms=8)
    store.save_proposals(cid, 0, cands, cond, {})
    lab_dir = cfg.lab.allowed_dir(cfg.output_dir)
    lab_dir.mkdir(parents=True)
    return store, cid, {c.formula: c.hash for c in cands}, lab_dir


def test_row_validation_and_unit_conversion():
    rec = parse_row({"formula": "MgO", "property": "band_gap", "value": "7800", "unit": "meV", "uncertainty": "50",
                     "sample_id": "S1", "date": "2026-11-20", "notes": ""})
    assert rec.value == pytest.approx(7.8) and rec.unit == "eV" and rec.uncertainty == pytest.approx(0.05)
    assert parse_row({"candidate": "x", "property": "formation_energy_per_atom", "value": "-96.485332",
                      "unit": "kJ/mol", "sample_id": "S", "date": "2026-01-01"}).value == pytest.approx(-1.0)
    for raw, why in [({"formula": "MgO", "property": "density", "value": "1", "unit": "g/cm3"}, "not one of"),
                     ({"formula": "MgO", "property": "band_gap", "value": "1", "unit": "K"}, "unit 'K'"),
                     ({"formula": "MgO", "property": "band_gap", "value": "x", "unit": "eV"}, "not a number"),
                     ({"formula": "MgO", "property": "band_gap", "value": "nan", "unit": "eV"}, "finite"),
                     ({"formula": "MgO", "candidate": "h", "property": "band_gap", "value": "1", "unit": "eV",
                       "sample_id": "S", "date": "2026-01-01"}, "exactly one"),
                     ({"formula": "MgO", "property": "band_gap", "value": "1", "unit": "eV", "sample_id": "S",
                       "date": "yesterday"}, "date"),
                     ({"formula": "MgO", "property": "band_gap", "value": "1", "unit": "eV", "sample_id": "",
                       "date": "2026-01-01"}, "sample_id"),
                     ({"formula": "MgO", "property": "synthesized", "value": "2", "unit": "1"}, "0 or 1"),
                     ({"formula": "MgO", "colour": "red"}, "unknown column")]:
        with pytest.raises(ValueError, match=why):
            parse_row(raw)


def test_bad_rows_are_all_reported_with_lines_and_nothing_is_written(campaign):
    store, cid, hashes, lab_dir = campaign
    path = lab_dir / "batch1.csv"
    path.write_text(HEADER + f"{hashes['MgO']},,,band_gap,7.8,eV,0.1,S1,2026-11-20,ok\n"
                    ",,MgO,band_gap,abc,eV,,S2,2026-11-20,\n"
                    ",,CaO,band_gap,7,eV,,S3,2026-11-20,\n"
                    "nohash,,,band_gap,7,eV,,S4,2026-11-20,\n")
    with pytest.raises(LabInputError) as err:
        ingest_lab_file(store, cid, path)
    assert [n for n, _ in err.value.errors] == [3, 4, 5]
    assert "not a number" in err.value.errors[0][1] and "no candidate has formula CaO" in err.value.errors[1][1]
    assert "nothing was written" in str(err.value) and store.lab_measurements(cid) == []

    report = ingest_lab_file(store, cid, path, skip_invalid=True)
    assert report.written == 1 and len(report.rejected) == 3
    reject = open(report.reject_file).read()
    assert reject.startswith("line,reason,candidate") and "CaO" in reject
    again = ingest_lab_file(store, cid, path, skip_invalid=True)
    assert again.written == 0 and len(store.lab_measurements(cid)) == 1  # idempotent
    props = [(p.hash, p.name, p.value, p.source) for p in store.properties(cid) if p.source == "lab"]
    assert props == [(hashes["MgO"], "band_gap", pytest.approx(7.8), "lab")]


def test_cif_json_and_id_matching_and_mean_of_repeats(campaign):
    store, cid, hashes, lab_dir = campaign
    rotated = _structures()["MgO2"].copy()
    rotated.apply_strain(0.01)
    (lab_dir / "s.cif").write_text(rotated.to(fmt="cif"))
    ids = {r["hash"]: r["id"] for r in store.lab_candidates(cid)}
    rows = [{"cif": "s.cif", "property": "synthesized", "value": 1, "unit": "1", "sample_id": "A", "date": "2026-11-01"},
            {"cif": _structures()["MgO"].to(fmt="cif"), "property": "band_gap", "value": 7.0, "unit": "eV",
             "sample_id": "B", "date": "2026-11-02"},
            {"candidate": str(ids[hashes["MgO"]]), "property": "band_gap", "value": 8.0, "unit": "eV",
             "sample_id": "C", "date": "2026-11-03"}]
    (lab_dir / "b.json").write_text(json.dumps(rows))
    assert ingest_lab_file(store, cid, lab_dir / "b.json").written == 3
    lab = {(p.hash, p.name): p.value for p in store.properties(cid) if p.source == "lab"}
    assert lab == {(hashes["MgO2"], "synthesized"): 1.0, (hashes["MgO"], "band_gap"): pytest.approx(7.5)}


def test_files_outside_the_allowed_folder_are_refused(campaign, tmp_path):
    store, cid, _, lab_dir = campaign
    outside = tmp_path / "elsewhere.csv"
    outside.write_text(HEADER)
    with pytest.raises(LabInputError, match="outside the allowed lab input folder"):
        ingest_lab_file(store, cid, outside)
    (lab_dir / "link.csv").symlink_to(outside)
    with pytest.raises(LabInputError, match="outside"):
        ingest_lab_file(store, cid, lab_dir / "link.csv")
    with pytest.raises(LabInputError, match="outside"):
        ingest_lab_file(store, cid, lab_dir / ".." / "elsewhere.csv")


def test_measured_values_take_precedence_in_feedback():
    targets = {"band_gap": TargetRange(min=2.0, max=4.0), "e_above_hull": TargetRange(max=0.1)}
    assert lab_score({"band_gap": 3.0}, targets, 0.0) == 1.0
    assert lab_score({"band_gap": 6.0}, targets, 0.1) == 0.1
    assert lab_score({"synthesized": 0.0}, targets, 0.0) == 0.0
    assert lab_score({"e_above_hull": 0.0}, targets, 0.0) is None  # E_hull measured: replaces the computed one
    cfg = FeedbackConfig(temperature=0.05, prior_strength=1e-9, min_weight=0.0)
    # arm "a" looks perfect computationally but the lab says its gap misses; "b" sits 0.3 eV above the MLIP hull
    # but was measured on target; "c" has no measurement
    fb = compute_feedback(1, [Outcome("a", 1, 0.0, 0.0), Outcome("b", 0, 0.3, 1.0), Outcome("c", 0, 0.0, None)],
                          [], cfg, 0.1, lab_used=[7, 3])
    assert fb.arm_weights == pytest.approx({"a": 0.0, "b": 1.0, "c": 1.0}, abs=1e-6) and fb.lab_measurements_used == [3, 7]


@pytest.mark.slow
def test_cli_ingest_runs_the_flow(campaign, prefect_server):
    store, cid, hashes, lab_dir = campaign
    path = lab_dir / "good.csv"
    path.write_text(HEADER + ",,MgO2,synthesized,0,1,,S9,2026-11-21,not obtained\n")
    res = CliRunner().invoke(app, ["lab", "ingest", str(path), "--campaign", cid, "--store", store.url])
    assert res.exit_code == 0 and "1 new measurement" in res.output, res.output
    bad = lab_dir / "bad.csv"
    bad.write_text(HEADER + ",,MgO2,synthesized,5,1,,S9,2026-11-21,\n")
    res = CliRunner().invoke(app, ["lab", "ingest", str(bad), "--campaign", cid, "--store", store.url])
    assert res.exit_code == 2 and "line 2" in res.output and "0 or 1" in res.output


def test_the_lab_folder_is_the_campaigns_wherever_ingest_runs(tmp_path, monkeypatch):
    """A campaign started with a relative output_dir: its lab folder is found from any current folder, and a bad
    file is refused at once, in one line, without starting a Prefect flow."""
    start, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    start.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(start)
    cfg = micro_config(tmp_path, **{"output_dir": "runs/mgo"})
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    cid = store.create_campaign(cfg, SeedSet(known_phases=[], templates=[]))
    cand = Candidate.create(_structures()["MgO"], Provenance(generator="test", generator_identity="t", round_index=0,
                                                             arm="a", key="a", conditions_hash="c"))
    cond = Conditions(round_index=0, chemical_system=["Mg", "O"], oxidation_states={"Mg": 2, "O": -2},
                      include_subsystems=True, max_atoms=8)
    store.save_proposals(cid, 0, [cand], cond, {})
    lab_dir = start / "runs" / "mgo" / "lab"
    lab_dir.mkdir(parents=True)
    good = lab_dir / "a.csv"
    good.write_text(HEADER + ",,MgO,band_gap,7.8,eV,,S1,2026-11-20,\n")
    monkeypatch.chdir(elsewhere)
    assert cfg.lab.allowed_dir(cfg.output_dir) == (elsewhere / "runs/mgo/lab").resolve()  # the old, wrong answer
    assert ingest_lab_file(store, cid, good, dry_run=True).rows == 1
    assert ingest_lab_file(store, cid, good).written == 1
    bad = lab_dir / "bad.csv"
    bad.write_text(HEADER + ",,MgO,synthesized,5,1,,S9,2026-11-21,\n")
    res = CliRunner().invoke(app, ["lab", "ingest", str(bad), "--campaign", cid, "--store", store.url])
    assert res.exit_code == 2 and "line 2" in res.output and "Traceback" not in res.output
    assert "prefect" not in res.output.lower()  # refused before any flow ran
