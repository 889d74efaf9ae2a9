"""`matloop train`: a real (tiny) training run from files, resumed exactly, and fine-tuning with replay."""

import json

import numpy as np
import torch
from ase.io import write
from pymatgen.io.ase import AseAtomsAdaptor
from typer.testing import CliRunner

from flows.cli import app
from models.checkpoint import load_checkpoint
from tasks.train import fine_tune
from tests.test_metrics import cscl, perovskite, rocksalt, wurtzite
from tests.test_seeds import BAD_CIF


def _data(tmp_path):
    structures = [rocksalt(a) for a in (4.1, 4.2, 4.3)] + [cscl(), wurtzite(), perovskite(), perovskite(4.0)]
    frames = []
    for i, s in enumerate(structures):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.info["band_gap"] = float(i)
        frames.append(atoms)
    write(tmp_path / "train.extxyz", frames, format="extxyz")
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    rocksalt(5.6, ("Na", "Cl")).to(filename=str(cifs / "nacl.cif"))
    (cifs / "broken.cif").write_text(BAD_CIF)
    return [tmp_path / "train.extxyz", cifs]


def test_train_resume_and_fine_tune(tmp_path):
    data = _data(tmp_path)
    out = tmp_path / "ckpt" / "d.pt"
    args = ["train", "--no-prefect", "--data", str(data[0]), "--data", str(data[1]), "--properties", "band_gap",
            "--out", str(out), "--set", "model.hidden_dim=16", "--set", "model.num_layers=1",
            "--set", "train.batch_size=4", "--set", "train.checkpoint_every=2", "--set", "holdout=0.25"]
    res = CliRunner().invoke(app, args + ["--epochs", "2"])
    assert res.exit_code == 0, res.output
    first = load_checkpoint(out)
    assert first["epoch"] == 2 and first["kind"] == "diffusion" and len(first["hash"]) == 16
    assert first["model_config"]["properties"] == ["band_gap"] and first["normalizer"]["prop_names"] == ["band_gap"]
    held = json.loads(out.with_suffix(".holdout.json").read_text())["ids"]
    assert len(held) == 2  # 25 % of the 8 readable structures (the broken CIF is skipped)
    res = CliRunner().invoke(app, args + ["--epochs", "4", "--resume"])
    assert res.exit_code == 0, res.output
    resumed = load_checkpoint(out)
    assert resumed["epoch"] == 4 and resumed["step"] == 2 * first["step"]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    # 2 + 2 resumed epochs give the model 4 uninterrupted epochs give (RNG, optimiser and EMA state restored)
    straight = tmp_path / "straight.pt"
    res = CliRunner().invoke(app, [a if a != str(out) else str(straight) for a in args] + ["--epochs", "4"])
    assert res.exit_code == 0, res.output
    once = load_checkpoint(straight)
    for key in ("state_dict", "ema_state_dict"):
        assert all(torch.equal(once[key][k], resumed[key][k]) for k in resumed[key]), key
    tuned = fine_tune(out, [perovskite(3.95)], np.array([[2.5]]), epochs=1, out=tmp_path / "ft.pt",
                                replay=[rocksalt()], replay_props=np.array([[0.0]]), replay_fraction=0.5)
    ft = load_checkpoint(tuned)
    assert ft["epoch"] == 5 and ft["fine_tuned_from"] == resumed["hash"] and ft["hash"] != resumed["hash"]


def test_train_reports_bad_input(tmp_path):
    res = CliRunner().invoke(app, ["train", "--no-prefect", "--data", str(tmp_path / "none.extxyz"),
                                   "--out", str(tmp_path / "x.pt")])
    assert res.exit_code == 2 and "not found" in res.output
    res = CliRunner().invoke(app, ["train", "--generator", "vae", "--out", str(tmp_path / "x.pt")])
    assert res.exit_code == 2 and "'diffusion' or 'gan'" in res.output
    (tmp_path / "bad.yaml").write_text(": : not yaml [")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("garbage\n")
    (tmp_path / "file").write_text("a file, not a folder")
    for args, message in [(["--config", str(tmp_path / "missing.yaml")], "missing.yaml: No such file"),
                          (["--config", str(tmp_path / "bad.yaml")], "bad.yaml is not YAML"),
                          (["--config", str(tmp_path / "list.yaml")], "expected a mapping"),
                          (["--data", str(garbage)], "garbage.extxyz is not a readable extended-XYZ file"),
                          (["--data", str(_data(tmp_path)[0]), "--epochs", "1", "--set", "model.hidden_dim=8",
                            "--out", str(tmp_path / "file" / "x.pt")], "cannot write")]:
        res = CliRunner().invoke(app, ["train", "--no-prefect", *args])
        assert res.exit_code == 2 and message in res.output.replace("\n", ""), (args, res.output)
        assert "Traceback" not in res.output


def test_train_a_conditional_gan_from_the_cli_and_fine_tune_it(tmp_path):
    data = _data(tmp_path)
    out = tmp_path / "gan.pt"
    args = ["train", "--no-prefect", "--generator", "gan", "--data", str(data[0]), "--data", str(data[1]),
            "--properties", "band_gap", "--epochs", "2", "--out", str(out), "--set", "model.hidden_dim=16",
            "--set", "model.latent_dim=8", "--set", "train.batch_size=4", "--set", "collapse.every=1",
            "--set", "collapse.n_samples=8"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(out)
    assert ckpt["kind"] == "gan" and ckpt["epoch"] == 2 and ckpt["model_config"]["properties"] == ["band_gap"]
    assert "monitor.uniqueness" in ckpt["history"][-1] and "critic" in res.output
    tuned = fine_tune(out, [perovskite(3.95)], np.array([[2.5]]), epochs=1, out=tmp_path / "ft.pt",
                      replay_fraction=0.5)
    ft = load_checkpoint(tuned)
    assert ft["kind"] == "gan" and ft["epoch"] == 3 and ft["fine_tuned_from"] == ckpt["hash"]


def test_training_flow_runs_under_prefect(prefect_server, tmp_path):
    from conf.training import TrainRunConfig
    from flows.train import train_generator

    data = _data(tmp_path)
    run = TrainRunConfig.model_validate({"data": [str(data[0])], "out": str(tmp_path / "f.pt"),
                                         "model": {"hidden_dim": 16, "num_layers": 1},
                                         "train": {"epochs": 1, "batch_size": 8}})
    assert train_generator(run) == str(tmp_path / "f.pt")
    assert load_checkpoint(tmp_path / "f.pt")["epoch"] == 1


def test_property_column_aliases_and_unlabelled_systems(tmp_path):
    """A file naming the gap differently (JARVIS' bandgap_optb88vdw) is read through `columns`; structures inside
    an `unlabelled_systems` system (or a sub-system) keep their place in the data and lose their labels."""
    import pandas as pd
    import pytest
    from pydantic import ValidationError

    from conf.training import TrainRunConfig
    from tasks.train import load_training_table, property_values

    rows = [("mgo", rocksalt(4.2, ("Mg", "O")), 4.5), ("li2o", rocksalt(4.6, ("Li", "O")), 5.0),
            ("nacl", rocksalt(5.6, ("Na", "Cl")), 5.1)]
    pd.DataFrame({"material_id": [r[0] for r in rows], "cif": [r[1].to(fmt="cif") for r in rows],
                  "bandgap_optb88vdw": [r[2] for r in rows]}).to_csv(tmp_path / "jarvis.csv", index=False)
    pd.DataFrame({"material_id": ["cscl"], "cif": [cscl(4.1, ("Cs", "Cl")).to(fmt="cif")], "band_gap": [3.0]}).to_csv(
        tmp_path / "mp.csv", index=False)
    paths = [tmp_path / "jarvis.csv", tmp_path / "mp.csv"]
    df = load_training_table(paths, 20, {"band_gap": ["bandgap_optb88vdw"]})
    assert list(df["id"]) == ["mgo", "li2o", "nacl", "cscl"]
    values = property_values(df, ["band_gap"], ["Li-V-O", "Cs-Cl"])
    assert values[0, 0] == 4.5 and np.isnan(values[1, 0]) and values[2, 0] == 5.1 and np.isnan(values[3, 0])
    assert np.isnan(property_values(load_training_table(paths, 20), ["band_gap"])[:3, 0]).all()  # no alias: unknown
    with pytest.raises(ValidationError, match="unknown element"):
        TrainRunConfig(data=paths, unlabelled_systems=["Li-Vx-O"])
