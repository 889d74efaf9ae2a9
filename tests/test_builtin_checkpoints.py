"""The generator checkpoints that ship with matloop: they are package data, load offline with weights_only, can be
fine-tuned (no optimizer state shipped), and a two-round diffusion campaign runs from ``checkpoint: builtin``."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from conf.generator import generator_config
from models.api import load_model
from models.checkpoint import BUILTIN_GENERATORS, WEIGHTS, builtin_checkpoint, load_checkpoint
from tasks.errors import GeneratorError
from tasks.generators.fetch import resolve_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", BUILTIN_GENERATORS)
def test_the_builtin_checkpoints_load_offline_and_hold_no_training_state(kind):
    path = resolve_checkpoint("builtin", kind=kind)
    assert path == builtin_checkpoint(kind) and path.parent == WEIGHTS and path.stat().st_size < 6e6
    model, ckpt = load_model(path, kind=kind)  # weights_only=True inside
    assert not {"optimizer", "rng_state"} & set(ckpt) and ckpt["exclude_ids"]
    assert all(not Path(p).is_absolute() and "/" not in p for p in ckpt["data_paths"])
    assert ckpt["hash"] in (WEIGHTS / "MODEL_CARD.md").read_text()
    assert sum(p.numel() for p in model.parameters()) > 1e5


def test_the_formation_energy_variant_ships_and_unknown_variants_are_named():
    path = resolve_checkpoint("builtin:eform", kind="diffusion")
    ckpt = load_checkpoint(path)
    assert path == WEIGHTS / "diffusion-eform.pt"
    assert ckpt["model_config"]["properties"] == ["formation_energy_per_atom"]
    assert ckpt["hash"] in (WEIGHTS / "MODEL_CARD.md").read_text() and "optimizer" not in ckpt
    assert set(ckpt["exclude_ids"]) == set(load_checkpoint(builtin_checkpoint("diffusion"))["exclude_ids"])
    with pytest.raises(GeneratorError, match="variants: builtin:eform, builtin:gap"):
        resolve_checkpoint("builtin:bandgap", kind="diffusion")
    with pytest.raises(GeneratorError, match="variants: none"):
        resolve_checkpoint("builtin:eform", kind="gan")


def test_the_band_gap_variant_ships_without_the_benchmark_systems_labels():
    path = resolve_checkpoint("builtin:gap", kind="diffusion")
    ckpt = load_checkpoint(path)
    assert path == WEIGHTS / "diffusion-gap.pt" and ckpt["model_config"]["properties"] == ["band_gap"]
    assert ckpt["unlabelled_systems"] == ["Li-V-O"] and ckpt["columns"] == {"band_gap": ["bandgap_optb88vdw"]}
    assert ckpt["hash"] in (WEIGHTS / "MODEL_CARD.md").read_text() and "optimizer" not in ckpt
    assert set(ckpt["exclude_ids"]) == set(load_checkpoint(builtin_checkpoint("diffusion"))["exclude_ids"])


def test_the_builtin_band_gap_predictor_loads_offline_with_its_held_out_report():
    from conf.loop import EvaluateConfig
    from tasks.properties.predictor import PropertyPredictor

    assert EvaluateConfig().predictor == "builtin"
    path = resolve_checkpoint("builtin", kind="predictor")
    pred = PropertyPredictor.load(path)  # weights_only=True inside
    assert path == WEIGHTS / "predictor.pt" and path.stat().st_size < 2e6
    assert pred.property == "band_gap" and pred.hash in (WEIGHTS / "MODEL_CARD.md").read_text()
    held = pred.report["held_out"]
    assert held["mae"] < 0.5 < pred.report["baseline_mae_train_mean"] and held["coverage_2sigma"] > 0.9
    assert "BaTiO3" in load_checkpoint(path)["train_config"]["exclude_formulas"]
    mean, sigma = pred.predict(["MgO", "Cu", "NaCl"])
    assert mean[0] > 3 and mean[1] < 0.5 and mean[2] > 3 and (sigma > 0).all()  # insulators, a metal


def test_builtin_is_the_default_and_unknown_kinds_are_named():
    assert generator_config(name="diffusion").diffusion.checkpoint == "builtin"
    assert generator_config(name="gan").gan.checkpoint == "builtin"
    with pytest.raises(GeneratorError, match="builtin ones: diffusion, gan, predictor"):
        resolve_checkpoint("builtin", kind="substitution")


def test_a_released_checkpoint_fine_tunes_from_its_ema_weights(tmp_path):
    from tasks.train import fine_tune

    rocksalt = Structure(Lattice.cubic(4.21), ["Mg", "O"] * 4,
                         [[0, 0, 0], [.5, .5, .5], [0, .5, .5], [.5, 0, 0], [.5, 0, .5], [0, .5, 0], [.5, .5, 0],
                          [0, 0, .5]])
    out = fine_tune(builtin_checkpoint("diffusion"), [rocksalt] * 4, None, 1, tmp_path / "tuned.pt",
                    replay=[rocksalt])
    tuned = load_checkpoint(out)
    base = load_checkpoint(builtin_checkpoint("diffusion"))
    assert tuned["epoch"] == base["epoch"] + 1 and tuned["hash"] != base["hash"]
    assert tuned["fine_tuned_from"] == base["hash"] and "optimizer" in tuned


def test_release_checkpoint_command_strips_and_keeps_the_hash(tmp_path, tiny_diffusion):
    from flows.cli import app

    res = CliRunner().invoke(app, ["release-checkpoint", str(tiny_diffusion), str(tmp_path / "r.pt")])
    assert res.exit_code == 0, res.output
    released, full = load_checkpoint(tmp_path / "r.pt"), load_checkpoint(tiny_diffusion)
    assert released["hash"] == full["hash"] and "optimizer" not in released
    assert (tmp_path / "r.pt").stat().st_size < tiny_diffusion.stat().st_size
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    bad = CliRunner().invoke(app, ["release-checkpoint", str(tmp_path / "junk.pt"), str(tmp_path / "x.pt")])
    assert bad.exit_code == 2 and "not a readable matloop checkpoint" in bad.output and bad.exception is not None
    assert "Traceback" not in bad.output and not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_the_wheel_carries_the_weights_and_the_model_card(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path)], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("matloop-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"models/weights/diffusion.pt", "models/weights/gan.pt", "models/weights/predictor.pt",
            "models/weights/MODEL_CARD.md"} <= names


@pytest.mark.slow
def test_a_two_round_diffusion_campaign_runs_from_the_builtin_checkpoint(prefect_server, tmp_path):
    from flows.campaign import run_campaign, start_campaign
    from tasks.store import Store
    from tests.conftest import micro_config

    cfg = micro_config(tmp_path, **{"generator.name": "diffusion", "generator.n_per_round": 4,
                                    "generator.diffusion.steps": 50, "relax.max_steps": 60,
                                    "learn.structures": 8, "learn.epochs": 1, "learn.replay": 8})
    assert cfg.generator.diffusion.checkpoint == "builtin"
    store = Store(cfg.store_url())
    cid = start_campaign(cfg)
    run_campaign(cfg.store_url(), cid)
    base = load_checkpoint(builtin_checkpoint("diffusion"))["hash"]
    rounds = store.rounds(cid)
    assert [r.status for r in rounds] == ["completed", "completed"]
    first = [c for _, _, c in store.proposals(cid, 0)]
    assert first and {c.provenance.details["checkpoint"] for c in first} == {base}
    assert all({el.symbol for el in c.structure.composition.elements} <= {"Mg", "O"} for c in first)
