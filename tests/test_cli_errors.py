"""Bad input to `matloop run`: one clear error, exit code 2, and no campaign row written."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.store import Store
from tests.test_seeds import BAD_CIF


def _run(config_file, *sets):
    args = ["run", "--config", str(config_file), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    return CliRunner().invoke(app, args)


def _no_campaign(tmp_path):
    db = tmp_path / "out" / "matloop.db"
    return not db.exists() or Store(f"sqlite:///{db}").campaigns() == []


@pytest.mark.parametrize("sets, message", [
    (["target.chemical_system=Mg-Xx"], "unknown element 'Xx'"),
    (["relax.chunk_sise=3"], "relax.chunk_sise"),
    (["target.max_atoms=1"], "no charge-balanced composition of Mg-O"),
    (["target.oxidation_states={Mg: 2, O: 2}"], "no charge-balanced composition"),
    (["seeds.known_phases=[{template: NoSuchThing, species: {Xe: Mg}}]"], "no seed with formula 'NoSuchThing'"),
    (["seeds.sources=[{kind: csv, path: /nonexistent/seeds.csv}]"], "/nonexistent/seeds.csv not found"),
    (["target.nonsense=1"], "(from --set target.nonsense=1)"),
    (["target.oxidation_states=null", "target.chemical_system=He-Ne"], "He, Ne has no known oxidation state"),
    (["generator.name=diffusion", "generator.diffusion.checkpoint=/nonexistent/d.pt"],
     "generator.diffusion.checkpoint: no checkpoint file at /nonexistent/d.pt"),
])
def test_bad_config_fails_before_anything_is_written(config_file, tmp_path, sets, message):
    res = _run(config_file, *sets)
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and message in res.output.replace("\n", " ")
    assert "Traceback" not in res.output
    assert _no_campaign(tmp_path)


def test_empty_seed_set_fails_before_anything_is_written(config_file, tmp_path):
    seeds = tmp_path / "cifs"
    seeds.mkdir()
    (seeds / "broken.cif").write_text(BAD_CIF)
    res = _run(config_file, f"seeds.sources=[{{kind: cif_dir, path: {seeds}}}]")
    assert res.exit_code == 2 and "seed set is empty" in res.output
    assert _no_campaign(tmp_path)


def test_resume_of_unknown_campaign(config_file, tmp_path):
    args = ["run", "--config", str(config_file), "--resume", "deadbeef", "--no-progress"]
    res = CliRunner().invoke(app, args)
    db = tmp_path / "out" / "matloop.db"
    assert res.exit_code == 2 and f"no store at {db}" in res.output.replace("\n", "") and not db.exists()
    Store(f"sqlite:///{db}").campaigns()  # an empty store
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "unknown campaign 'deadbeef'" in res.output


def test_unreadable_seed_and_checkpoint_files_fail_before_anything_is_written(config_file, tmp_path):
    trunc = tmp_path / "trunc.extxyz"
    trunc.write_text('2\nProperties=species:S:1:pos:R:3 pbc="T T T" Lattice="4 0 0 0 4 0 0 0 4"\nMg 0 0 0\n')
    res = _run(config_file, f"seeds.sources=[{{kind: extxyz, path: {trunc}}}]")
    assert res.exit_code == 2 and "is not a readable extended-XYZ file" in res.output.replace("\n", "")
    res = _run(config_file, "generator.name=gan", f"generator.gan.checkpoint={trunc}")
    assert res.exit_code == 2 and "not a readable matloop checkpoint" in res.output.replace("\n", "")
    assert "Traceback" not in res.output and _no_campaign(tmp_path)
    diffusion = Path(__file__).resolve().parents[1] / "models" / "weights" / "diffusion.pt"
    res = _run(config_file, "generator.name=gan", f"generator.gan.checkpoint={diffusion}")  # wrong family
    assert res.exit_code == 2 and "not a gan model" in res.output.replace("\n", "") and _no_campaign(tmp_path)
    res = _run(config_file, "generator.name=gan", "generator.gan.checkpoint=[csv]")
    assert res.exit_code == 2 and "[csv]" in res.output  # Rich markup does not swallow it
