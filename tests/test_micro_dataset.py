"""Microstructure datasets (issue 22): simulated grids split by condition and by sample, cached by content; the
user's own folder of images validated with errors that name the file and row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from conf.micro import MicroDataConfig
from tasks.micro.dataset import MicroDataError, config_hash, held_out_conditions, load_dataset


def small(tmp_path, **source) -> MicroDataConfig:
    return MicroDataConfig.model_validate({
        "source": source or {"kind": "spinodal", "mean_composition": [0.4, 0.5, 0.6], "anneal_time": [20, 40, 80]},
        "size": 32, "per_condition": 4, "test_conditions": 1, "val_fraction": 0.25, "cache_dir": tmp_path / "cache"})


def test_a_simulated_grid_holds_out_an_interior_condition_and_splits_the_rest_by_sample(tmp_path):
    cfg = small(tmp_path)
    data = load_dataset(cfg)
    assert data.images.shape == (36, 32, 32) and data.images.dtype == bool
    assert data.condition_columns == ("mean_composition", "anneal_time")
    test_images, test_rows = data.split("test")
    assert len(test_images) == 4 and set(test_rows["condition"]) == {4}  # the only interior point of 3 x 3
    assert test_rows[["mean_composition", "anneal_time"]].drop_duplicates().values.tolist() == [[0.5, 40.0]]
    per_condition = data.table[data.table.split != "test"].groupby("condition")["split"].value_counts().unstack()
    assert (per_condition["val"] == 1).all() and (per_condition["train"] == 3).all()
    with pytest.raises(ValueError, match="allowed: train, val, test"):
        data.split("holdout")


def test_the_dataset_is_cached_by_content_and_reproduced_from_its_config(tmp_path):
    cfg = small(tmp_path)
    first = load_dataset(cfg)
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert [p.name for p in cached] == [f"spinodal-{config_hash(cfg)}.npz"]
    again = load_dataset(cfg)  # read back
    assert np.array_equal(first.images, again.images)
    pd.testing.assert_frame_equal(first.table, again.table)
    cached[0].unlink()
    assert np.array_equal(load_dataset(cfg).images, first.images)  # simulated again: the same images
    other = cfg.model_copy(update={"seed": 1})
    assert config_hash(other) != config_hash(cfg)
    assert not np.array_equal(load_dataset(other).images, first.images)


def test_porous_grid_and_the_conditions_that_cannot_be_held_out(tmp_path):
    cfg = small(tmp_path, kind="porous", porosity=[0.4, 0.5, 0.6], blobiness=[0.5, 1.0, 2.0])
    data = load_dataset(cfg)
    means = data.table.assign(vf=data.images.mean(axis=(1, 2))).groupby("porosity")["vf"].mean()
    assert np.allclose(means.values, [0.4, 0.5, 0.6], atol=0.03)
    with pytest.raises(MicroDataError, match="only 1 of the 9 conditions are interior"):
        held_out_conditions([(a, b) for a in (1, 2, 3) for b in (1, 2, 3)], 2, seed=0)


def test_config_refuses_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ValidationError, match="Extra inputs"):
        MicroDataConfig.model_validate({"source": {"kind": "porous", "porosity": [0.5, 0.6], "blob": 1}})
    with pytest.raises(ValidationError, match="mean_composition must lie in"):
        MicroDataConfig.model_validate({"source": {"kind": "spinodal", "mean_composition": [0.5, 1.5]}})
    with pytest.raises(ValidationError):
        MicroDataConfig.model_validate({"size": 100})
    with pytest.raises(ValidationError, match="unstable for gamma=1.0"):
        MicroDataConfig.model_validate({"source": {"kind": "spinodal", "dt": 2.5}})
    with pytest.raises(ValidationError, match="rounds to"):
        MicroDataConfig.model_validate({"source": {"kind": "spinodal", "dt": 1.5, "anneal_time": [10, 10.5]}})


def write_folder(tmp_path, n=9, size=32):
    import imageio.v3 as iio

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        a, b = 1.0 + i % 3, 10.0 * (1 + i // 3)
        iio.imwrite(folder / f"m{i}.png", ((rng.random((size, size)) < 0.5) * 255).astype(np.uint8))
        rows.append({"file": f"m{i}.png", "temperature": a, "time": b})
    pd.DataFrame(rows).to_csv(tmp_path / "conditions.csv", index=False)
    return folder


def folder_cfg(tmp_path, folder) -> MicroDataConfig:
    return MicroDataConfig.model_validate({
        "source": {"kind": "folder", "folder": folder, "conditions_csv": tmp_path / "conditions.csv"},
        "size": 32, "test_conditions": 1})


def test_a_users_folder_of_images_is_read_with_its_conditions(tmp_path):
    folder = write_folder(tmp_path)
    data = load_dataset(folder_cfg(tmp_path, folder))
    assert data.images.shape == (9, 32, 32) and data.condition_columns == ("temperature", "time")
    assert data.table.loc[data.table.split == "test", ["temperature", "time"]].values.tolist() == [[2.0, 20.0]]


@pytest.mark.parametrize("damage, message", [
    (lambda t, f: (f / "m3.png").unlink(), r"row 5: no image .*m3.png"),
    (lambda t, f: (f / "m1.png").write_text("not an image"), r"m1.png: not a readable PNG/TIFF image"),
    (lambda t, f: pd.read_csv(t / "conditions.csv").assign(time="late").to_csv(t / "conditions.csv", index=False),
     r"row 2: time='late' is not a number"),
    (lambda t, f: pd.read_csv(t / "conditions.csv").drop(columns="file").to_csv(t / "conditions.csv", index=False),
     r"needs a 'file' column"),
    (lambda t, f: pd.read_csv(t / "conditions.csv").assign(condition=1).to_csv(t / "conditions.csv", index=False),
     r"'condition' is reserved"),
    (lambda t, f: (t / "conditions.csv").write_bytes(b"file,t\n\xff\xfe,1\n"), r"conditions file .*conditions.csv"),
    (lambda t, f: (t / "conditions.csv").write_text(""), r"conditions file .*conditions.csv"),
    (lambda t, f: pd.read_csv(t / "conditions.csv").assign(time=10.0, split=["test"] + ["train"] * 8).to_csv(
        t / "conditions.csv", index=False), r"row 5: this condition also has test images"),
    (lambda t, f: pd.read_csv(t / "conditions.csv").assign(split="holdout").to_csv(t / "conditions.csv", index=False),
     r"split must be one of train, val, test \(got holdout\)"),
])
def test_a_bad_folder_is_refused_naming_the_file_and_row(tmp_path, damage, message):
    folder = write_folder(tmp_path)
    damage(tmp_path, folder)
    with pytest.raises(MicroDataError, match=message):
        load_dataset(folder_cfg(tmp_path, folder))


def test_images_of_another_size_are_refused(tmp_path):
    folder = write_folder(tmp_path, size=16)
    with pytest.raises(MicroDataError, match="16x16 pixels, the config says size=32"):
        load_dataset(folder_cfg(tmp_path, folder))


SMALL_SET = ["size=32", "per_condition=2", "test_conditions=1", "source.mean_composition=[0.4, 0.5, 0.6]",
             "source.anneal_time=[10, 20, 40]"]


def test_matloop_micro_data_simulates_caches_and_lists_the_conditions(tmp_path):
    from typer.testing import CliRunner

    from conf.micro import MicroDataConfig
    from flows.cli import app
    from flows.micro_cmd import load_micro_config

    cfg_file = Path(__file__).parents[1] / "conf" / "micro_data.yaml"
    assert load_micro_config(cfg_file, []) == MicroDataConfig()  # the shipped file states the defaults
    args = ["micro", "data", "-c", str(cfg_file), *(x for s in SMALL_SET for x in ("--set", s)),
            "--set", f"cache_dir={tmp_path}"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "spinodal dataset: 18 images of 32x32" in result.output and "splits: train 16, val 0, test 2" in result.output
    assert len(list(tmp_path.glob("spinodal-*.npz"))) == 1


@pytest.mark.parametrize("extra, message", [
    (["--set", "size=100"], "size: Input should be 32, 64, 128 or 256"),
    (["--set", "source.kind=lattice"], "source: Input tag 'lattice'"),
    (["--set", "test_conditions=5"], "test_conditions=5 but only 1 of the 9 conditions are interior"),
])
def test_matloop_micro_data_refuses_bad_settings_in_one_line_and_writes_nothing(tmp_path, extra, message):
    from typer.testing import CliRunner

    from flows.cli import app

    args = ["micro", "data", *(x for s in SMALL_SET for x in ("--set", s)), "--set", f"cache_dir={tmp_path}", *extra]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output
    assert not list(tmp_path.iterdir())
