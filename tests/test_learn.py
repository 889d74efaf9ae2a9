"""Learning inside the campaign: the learn step fine-tunes a checkpoint generator on the campaign's relaxations,
the next round samples from the new checkpoint, a rerun of the step gives the same checkpoint, and with learning
off nothing is fine-tuned. Pure parts first; then real Prefect, SQLite, CHGNet and a tiny diffusion model."""

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tasks.learn import best_labels, current_checkpoint, fine_tune_round, weighted_draw
from tasks.results import PropertyValue
from tests.conftest import micro_config


def test_best_labels_prefer_lab_then_dft_corrected_then_mlip():
    props = [("a", "e_above_hull", 0.2, "eV/atom", "mlip"), ("a", "formation_energy_per_atom", -1.0, "eV/atom", "mlip"),
             ("a", "formation_energy_per_atom", -1.1, "eV/atom", "dft"),
             ("b", "e_above_hull", 0.3, "eV/atom", "mlip"), ("b", "e_above_hull", 0.0, "eV/atom", "lab"),
             ("c", "e_above_hull", 0.05, "eV/atom", "mlip")]
    labels = best_labels([PropertyValue(*p) for p in props])
    assert labels["a"] == pytest.approx({"e_above_hull": 0.1, "formation_energy_per_atom": -1.1})
    assert labels["b"]["e_above_hull"] == 0.0 and labels["c"] == {"e_above_hull": 0.05}
    gaps = best_labels([PropertyValue("d", "band_gap", 1.0, "eV", "dft"), PropertyValue("d", "band_gap", 2.0, "eV", "lab")])
    assert gaps["d"] == {"band_gap": 2.0}


def test_targets_move_towards_the_hits_and_stay_inside_the_users_range():
    from conf.schema import TargetRange
    from tasks.conditions import campaign_hits, learned_targets

    labels = {"a": {"e_above_hull": 0.0, "formation_energy_per_atom": -2.0, "band_gap": 1.5},
              "b": {"e_above_hull": 0.05, "formation_energy_per_atom": -1.6, "band_gap": 2.9},
              "c": {"e_above_hull": 0.4, "formation_energy_per_atom": -0.5, "band_gap": 0.1}}
    hits = campaign_hits(labels, 0.1)
    assert len(hits) == 2  # c is above the threshold
    user = {"e_above_hull": TargetRange(max=0.1), "band_gap": TargetRange(min=1.0, max=3.0)}
    targets, changed = learned_targets(user, hits, margin=0.2, min_hits=2)
    assert targets["e_above_hull"] == user["e_above_hull"]  # kept for models conditioned on it
    assert changed["formation_energy_per_atom"] == pytest.approx([-2.2, -1.4])
    assert changed["band_gap"] == pytest.approx([1.3, 3.0])  # the hits' span, cut at the user's maximum
    assert learned_targets(user, hits[:1], 0.2, 2) == (user, {})  # too few hits: nothing moves
    exact = {"band_gap": TargetRange(value=2.0)}
    assert learned_targets(exact, hits, 0.2, 1) == (exact, {})  # an exact request is the user's


def test_weighted_draw_favours_low_e_hull_and_is_seeded():
    draw = weighted_draw([0.0, 0.5, 0.0], 200, temperature=0.05, seed=1)
    assert draw == weighted_draw([0.0, 0.5, 0.0], 200, temperature=0.05, seed=1)
    assert draw.count(1) < 3 and draw.count(0) > 50 and draw.count(2) > 50


def test_current_checkpoint_is_the_latest_learned_before_the_round(tmp_path):
    cfg = micro_config(tmp_path, **{"generator.name": "diffusion", "generator.diffusion.checkpoint": "base.pt"})
    summaries = [(0, {"learn": {"checkpoint": "r0.pt"}}), (1, {"learn": "no converged relaxation yet"}),
                 (2, {"learn": {"checkpoint": "r2.pt"}})]
    assert current_checkpoint(cfg, summaries, 0) == Path("base.pt")
    assert current_checkpoint(cfg, summaries, 2) == current_checkpoint(cfg, summaries, 1) == Path("r0.pt")
    assert current_checkpoint(cfg, summaries, 3) == Path("r2.pt")


def test_fine_tuning_a_round_writes_a_new_checkpoint_reproducibly(tmp_path, tiny_diffusion):
    from models.api import load_model

    cfg = micro_config(tmp_path, **{"generator.name": "diffusion", "learn.structures": 16, "learn.epochs": 1,
                                    "generator.diffusion.checkpoint": str(tiny_diffusion)})
    mgo = Structure(Lattice.cubic(4.21), ["Mg"] * 4 + ["O"] * 4, [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                                                                  [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
    found = [(mgo, {"e_above_hull": 0.0}), (mgo.copy().scale_lattice(mgo.volume * 1.3), {"e_above_hull": 0.4})]
    replay = [Structure(Lattice.cubic(3.0), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])]
    a = fine_tune_round(tiny_diffusion, found, replay, cfg, seed=3, out=tmp_path / "a.pt")
    b = fine_tune_round(tiny_diffusion, found, replay, cfg, seed=3, out=tmp_path / "b.pt")
    _, base = load_model(tiny_diffusion)
    assert a["hash"] == b["hash"] != base["hash"] == a["from"] and a["structures"] == 16 and a["replay"] == 1
    tuned, _ = load_model(tmp_path / "a.pt")
    before, _ = load_model(tiny_diffusion)
    assert any(not np.allclose(p.detach(), q.detach()) for p, q in zip(tuned.parameters(), before.parameters()))


@pytest.fixture(scope="session")
def mgo_diffusion(tmp_path_factory) -> Path:
    """A tiny diffusion checkpoint of small Mg-O cells (strained, rattled rock salt, zinc blende, CsCl, wurtzite),
    trained on one thread so it is the same in every session: its samples are cells CHGNet relaxes."""
    from ase.build import bulk
    from ase.io import write

    from conf.training import TrainRunConfig
    from tasks.train import train_model

    tmp = tmp_path_factory.mktemp("mgo-diffusion")
    rng = np.random.default_rng(0)
    frames = []
    for proto, a in (("rocksalt", 4.21), ("zincblende", 4.6), ("cesiumchloride", 2.66), ("wurtzite", 3.3)):
        for _ in range(16):
            atoms = bulk("MgO", proto, a=a)
            atoms.set_cell(atoms.cell @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
            atoms.rattle(0.03, seed=int(rng.integers(1e6)))
            frames.append(atoms)
    write(tmp / "mgo.extxyz", frames, format="extxyz")
    run = TrainRunConfig.model_validate({
        "data": [str(tmp / "mgo.extxyz")], "max_atoms": 4, "out": str(tmp / "mgo.pt"), "threads": 1,
        "model": {"hidden_dim": 32, "num_layers": 2, "num_freqs": 4},
        "train": {"epochs": 60, "batch_size": 16, "lr": 2e-3, "checkpoint_every": 30}})
    return train_model(run)


@pytest.mark.slow
def test_the_next_round_samples_from_the_fine_tuned_checkpoint(prefect_server, tmp_path, mgo_diffusion):
    from flows.campaign import run_campaign, start_campaign
    from tasks.learn import learn_task
    from tasks.store import Store

    # small Mg-O cells, 3 rounds: the tiny model's samples relax, and a round after the first one that had a converged
    # relaxation to learn from samples from the fine-tuned checkpoint
    base = {"generator.name": "diffusion", "generator.n_per_round": 12, "target.max_atoms": 4, "rounds": 3,
            "generator.diffusion": {"checkpoint": str(mgo_diffusion), "steps": 30}, "relax.max_steps": 150,
            "learn.structures": 16, "learn.epochs": 1, "learn.condition_min_hits": 1}
    runs = {}

    def run(name: str, **extra) -> None:
        cfg = micro_config(tmp_path / name, **{**base, **extra})
        cid = start_campaign(cfg)
        run_campaign(cfg.store_url(), cid)
        runs[name] = (Store(cfg.store_url()), cid)

    run("on")
    run("off", **{"feedback.enabled": False, "rounds": 1})  # (rounds only as many as the assertions need)
    summaries = [r.summary["learn"] for r in runs["on"][0].rounds(runs["on"][1])]
    run("frozen", **{"learn.fine_tune": False,
                     "rounds": next((r + 2 for r, s in enumerate(summaries[:-1]) if isinstance(s, dict)), 1)})
    off_store, off = runs["off"]
    assert all(r.summary["learn"] == "off (feedback.enabled: false)" for r in off_store.rounds(off))
    assert not any("conditions_learned" in r.summary for r in off_store.rounds(off))
    for r in runs["on"][0].rounds(runs["on"][1]):  # a moved target the Mg-O model cannot use is named, not dropped
        if "conditions_learned" in r.summary:
            assert list(r.summary["conditions_learned"]) == ["formation_energy_per_atom"]
            assert "formation_energy_per_atom" in r.summary["generator_notes"]["targets_not_conditioned"]
    store, cid = runs["on"]
    summaries = [r.summary["learn"] for r in store.rounds(cid)]
    assert all(isinstance(s, dict) or s == "no converged relaxation yet" for s in summaries)
    learned_rounds = [r for r, s in enumerate(summaries[:-1]) if isinstance(s, dict)]
    assert learned_rounds, f"the Mg-O model gave no converged relaxation before the last round: {summaries}"
    first = learned_rounds[0]
    learned = summaries[first]
    assert Path(learned["checkpoint"]).is_file() and learned["hash"] != learned["from"]
    assert all(s == "no converged relaxation yet" for s in summaries[:first])
    nxt = [c for _, _, c in store.proposals(cid, first + 1) if c.provenance.round_index == first + 1]
    assert nxt and {c.provenance.details["checkpoint"] for c in nxt} == {learned["hash"]}
    frozen_store, frozen = runs["frozen"]
    assert frozen_store.round(frozen, first).summary["learn"] == "off (learn.fine_tune: false)"
    frozen_nxt = [c for _, _, c in frozen_store.proposals(frozen, first + 1) if c.provenance.round_index == first + 1]
    assert {c.provenance.details["checkpoint"] for c in frozen_nxt} == {learned["from"]}
    assert {c.hash for c in nxt} != {c.hash for c in frozen_nxt}  # the fine-tuned model samples something else
    last = store.rounds(cid)[-1]
    assert isinstance(last.summary["learn"], dict)
    store.advance_round(cid, last.index, "dft")  # the last round resumed before its learn step finished
    learn_task.fn(store.url, cid, last.index)
    assert store.round(cid, last.index).summary["learn"]["hash"] == last.summary["learn"]["hash"]
