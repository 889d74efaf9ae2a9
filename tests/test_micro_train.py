"""``matloop micro train`` (issue 22): both generator families train from one command on a simulated dataset,
checkpoint, resume, and load back to sample images for a process condition."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import app
from models.checkpoint import load_checkpoint
from tasks.micro.dataset import MicroDataError
from tasks.micro.train import load_micro_generator


def settings(tmp_path, model: str, epochs: int) -> list[str]:
    sets = [f"model={model}", "data.size=32", "data.per_condition=4", "data.source.kind=porous",
            "data.source.porosity=[0.3, 0.5, 0.7]", "data.source.blobiness=[0.5, 1, 2]", "data.test_conditions=1",
            "data.val_fraction=0.25",
            f"data.cache_dir={tmp_path / 'data'}", f"train.epochs={epochs}", "train.batch_size=8",
            "diffusion.widths=[8, 16]", "diffusion.emb_dim=16", "gan.generator_width=16", "gan.critic_width=8",
            "gan.z_channels=4"]
    return [x for s in sets for x in ("--set", s)]


@pytest.mark.parametrize("model", ["diffusion", "gan"])
def test_micro_train_checkpoints_resumes_and_samples_by_condition(tmp_path, model):
    out = tmp_path / f"{model}.pt"
    first = CliRunner().invoke(app, ["micro", "train", "--out", str(out), *settings(tmp_path, model, 1)])
    assert first.exit_code == 0, first.output
    assert "epoch 1" in first.output and out.is_file()
    # --resume rebuilds the run from the checkpoint itself: no config repeated, only train settings changed
    again = CliRunner().invoke(app, ["micro", "train", "--out", str(out), "--resume", "--set", "train.epochs=2"])
    assert again.exit_code == 0, again.output
    ckpt = load_checkpoint(out)
    assert ckpt["epoch"] == 2 and ckpt["kind"] == f"micro-{model}"
    assert ckpt["data_config"]["cache_dir"] == str((tmp_path / "data").resolve())
    other = CliRunner().invoke(app, ["micro", "train", "--out", str(out), "--resume", "--set", "data.per_condition=6",
                                     "--set", "train.epochs=3"], env={"COLUMNS": "300"})
    assert other.exit_code == 2 and "whose data_config differ" in other.output and "Traceback" not in other.output
    assert load_checkpoint(out)["epoch"] == 2
    assert ckpt["condition_columns"] == ["porosity", "blobiness"]
    gen = load_micro_generator(out)
    images = gen.sample({"porosity": 0.5, "blobiness": 1.0}, n=2, steps=3)
    assert images.shape == (2, 32, 32) and images.dtype == bool
    with pytest.raises(MicroDataError, match="missing blobiness"):
        gen.sample({"porosity": 0.5}, n=1)


def test_micro_train_refuses_a_missing_checkpoint_to_resume_and_foreign_checkpoints(tmp_path, tiny_diffusion):
    result = CliRunner().invoke(app, ["micro", "train", "--out", str(tmp_path / "none.pt"), "--resume"])
    assert result.exit_code == 2 and "--resume: no checkpoint at" in result.output
    with pytest.raises(MicroDataError, match="is not a microstructure generator"):
        load_micro_generator(tiny_diffusion)


def test_the_shipped_training_config_is_valid():
    from pathlib import Path

    from conf.micro import MicroTrainConfig
    from flows.micro_cmd import load_micro_config

    cfg = load_micro_config(Path(__file__).parents[1] / "conf" / "micro_train.yaml", [], MicroTrainConfig)
    assert cfg.model == "diffusion" and cfg.data.size == 64 and cfg.train.epochs == 60


def test_micro_evaluate_scores_the_held_out_conditions_and_draws_them(tmp_path):
    import json

    out = tmp_path / "gan.pt"
    assert CliRunner().invoke(app, ["micro", "train", "--out", str(out), *settings(tmp_path, "gan", 1)]).exit_code == 0
    result = CliRunner().invoke(app, ["micro", "evaluate", str(out), "--n", "3", "--property",
                                      "--out", str(tmp_path / "eval")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [r["condition"] for r in metrics["conditions"]] == [{"porosity": 0.5, "blobiness": 1.0}]
    row = metrics["conditions"][0]
    assert row["n_generated"] == 3 and row["n_real"] == 4 and row["d_eff_real"] > 0
    assert 0 <= row["nearest_train_distance"] <= 0.5 and metrics["images_per_second"] > 0
    assert {"s2.png", "samples.png", "d_eff.png"} <= {p.name for p in (tmp_path / "eval").iterdir()}
    assert metrics["split"] == "test" and metrics["guidance"] is None and metrics["steps"] is None  # a GAN's
    val = CliRunner().invoke(app, ["micro", "evaluate", str(out), "--n", "2", "--split", "val",
                                   "--out", str(tmp_path / "val")])
    assert val.exit_code == 0, val.output
    assert len(json.loads((tmp_path / "val" / "metrics.json").read_text())["conditions"]) == 8
    missing = CliRunner().invoke(app, ["micro", "evaluate", str(tmp_path / "none.pt")])
    assert missing.exit_code == 2 and "no checkpoint at" in missing.output


def test_evaluating_a_dataset_without_test_images_fails_before_writing(tmp_path):
    import imageio.v3 as iio
    import numpy as np
    import pandas as pd

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        iio.imwrite(folder / f"m{i}.png", ((rng.random((32, 32)) < 0.5) * 255).astype(np.uint8))
    pd.DataFrame({"file": [f"m{i}.png" for i in range(4)], "porosity": [0.4, 0.4, 0.6, 0.6],
                  "split": ["train", "val", "train", "val"]}).to_csv(tmp_path / "c.csv", index=False)
    out = tmp_path / "g.pt"
    sets = ["model=gan", "data.size=32", "data.source.kind=folder", f"data.source.folder={folder}",
            f"data.source.conditions_csv={tmp_path / 'c.csv'}", "train.epochs=1", "train.batch_size=2",
            "gan.generator_width=16", "gan.critic_width=8", "gan.z_channels=4"]
    trained = CliRunner().invoke(app, ["micro", "train", "--out", str(out), *(x for s in sets for x in ("--set", s))])
    assert trained.exit_code == 0, trained.output
    result = CliRunner().invoke(app, ["micro", "evaluate", str(out), "--out", str(tmp_path / "eval")],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "has no test images" in result.output
    assert not (tmp_path / "eval").exists()
