"""The GAN: critic invariances, masking, one training step, collapse restarts, checkpoints and config."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from models.api import load_model, training_meta
from models.checkpoint import load_checkpoint
from models.collapse import CollapseConfig, CollapseMonitor
from models.crystal import MAX_Z, Normalizer, batch_from_structures
from models.data import CrystalDataset
from models.gan import CrystalGAN, GANConfig
from models.training import MonitorReport, TrainConfig, Trainer, TrainingStopped, resume_trainer

SMALL = GANConfig(hidden_dim=32, latent_dim=8, generator_layers=1, critic_layers=2, num_freqs=4)


def perovskite(a_site="Sr", b_site="Ti", a=3.9):
    return Structure(Lattice.cubic(a), [a_site, b_site, "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])


@pytest.fixture
def toy():
    structures = [perovskite("Sr", "Ti", 3.9), perovskite("Ba", "Zr", 4.2),
                  Structure(Lattice([[3, 0.2, 0], [0.5, 4, 0], [0, 0.3, 5]]), ["Mg", "O", "O"],
                            [[0.1, 0.2, 0.3], [0.6, 0.1, 0.9], [0.3, 0.7, 0.5]])]
    torch.manual_seed(0)
    return structures, CrystalGAN(SMALL, Normalizer.fit(structures))


def _score(model, structures):
    b = batch_from_structures(structures)
    lattice = model.normalizer.lattice_to_model(b.lattice.double(), b.num_atoms).float()
    onehot = torch.nn.functional.one_hot(b.species, MAX_Z + 1).float()
    return model.critic(onehot, b.frac, lattice, b.batch, b.edges(), None)[0]


@pytest.mark.parametrize("distance_rbf", [0, 16])
def test_critic_is_invariant_to_permutation_rotation_and_translation(toy, distance_rbf):
    structures, model = toy
    if distance_rbf:  # with the distance message step
        model = CrystalGAN(SMALL.updated(distance_rbf=distance_rbf), model.normalizer)
        assert model.critic.distances is not None
    model.eval()
    base = _score(model, structures)
    rotated = [Structure(Lattice(s.lattice.matrix @ _rotation().T), s.species, s.frac_coords) for s in structures]
    shifted = [Structure(s.lattice, s.species, s.frac_coords + [0.31, 0.77, 0.12]) for s in structures]
    permuted = [Structure(s.lattice, s.species[::-1], s.frac_coords[::-1]) for s in structures]
    for variant in (rotated, shifted, permuted):
        assert torch.allclose(_score(model, variant), base, atol=1e-4)
    assert not torch.allclose(_score(model, [perovskite("Sr", "Ti", 5.0)] + structures[1:]), base, atol=1e-4)


def test_distance_messages_see_atom_positions_and_learn(toy):
    structures, model = toy
    model = CrystalGAN(SMALL.updated(distance_rbf=16), model.normalizer)
    model.eval()
    moved = perovskite("Sr", "Ti", 3.9)
    moved.translate_sites([0], [0.1, 0.05, 0.0])  # same cell and species, one atom off its site
    assert not torch.allclose(_score(model, [moved] + structures[1:])[0], _score(model, structures)[0], atol=1e-5)
    model.train()
    data = CrystalDataset(structures, model.normalizer)
    Trainer(model, TrainConfig(epochs=1, batch_size=3), training_meta(model.cfg, data)).fit(data)
    grads = [p.grad for p in model.critic.distances.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_pair_distances_find_the_nearest_image_in_sheared_cells():
    from models.crystal import symmetric_factor, symmetric_to_vector
    from models.gan_nets import pair_distances

    rng = np.random.default_rng(1)
    cell = Lattice([[4.0, 0, 0], [3.1, 2.5, 0], [0.9, 1.2, 3.6]])  # strongly sheared
    s = Structure(cell, ["Mg"] * 6, rng.random((6, 3)))
    b = batch_from_structures([s], dtype=torch.float64)
    src, dst = b.edges()
    vec = symmetric_to_vector(symmetric_factor(b.lattice))
    got = pair_distances(b.frac, vec, b.batch, src, dst).numpy()
    expected = [s.get_distance(int(i), int(j)) for i, j in zip(src, dst)]
    assert np.allclose(got, expected, atol=1e-8)


def test_gan_checkpoints_from_before_later_options_still_load(toy):
    _, model = toy
    stored = model.cfg.model_dump(mode="json")
    for later in ("distance_rbf", "species_noise", "structure_matching", "profile_bins", "profile_max"):
        stored.pop(later)  # a config written before the fields existed
    again = CrystalGAN(GANConfig.model_validate(stored), model.normalizer)
    again.load_state_dict(model.state_dict())  # strict: the same modules
    assert again.critic.distances is None
    assert again.cfg.architecture.species_noise == 1.0 and again.cfg.loss.structure_matching == 0.0  # as before


def test_gan_config_groups_its_fields_and_stores_them_flat():
    """Grouped in Python (architecture / optimiser / loss), flat in checkpoints and training configs, so the
    shipped GAN's hash (which covers its config) is what it was."""
    from models.checkpoint import builtin_checkpoint, load_checkpoint, state_hash

    cfg = GANConfig(hidden_dim=32, generator_lr=1e-3, r1_gamma=2.0, properties=("band_gap",))
    assert (cfg.architecture.hidden_dim, cfg.optimiser.generator_lr, cfg.loss.r1_gamma) == (32, 1e-3, 2.0)
    flat = cfg.model_dump(mode="json")
    assert flat["hidden_dim"] == 32 and "architecture" not in flat and GANConfig.model_validate(flat) == cfg
    assert GANConfig(architecture={"hidden_dim": 32}).architecture.hidden_dim == 32
    with pytest.raises(ValueError, match="hidden_dim given both flat and under architecture"):
        GANConfig(hidden_dim=32, architecture={"hidden_dim": 64})
    with pytest.raises(ValueError, match="hiden_dim"):
        GANConfig(hiden_dim=32)
    shipped = load_checkpoint(builtin_checkpoint("gan"))
    stored = GANConfig.model_validate(shipped["model_config"]).model_dump(mode="json")
    assert stored == shipped["model_config"]
    meta = {"kind": shipped["kind"], "model_config": stored, "normalizer": shipped["normalizer"]}
    assert state_hash(shipped["ema_state_dict"], meta) == shipped["hash"]


def _rotation() -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_sampling_is_seeded_and_species_stay_in_the_allowed_elements(toy):
    _, model = toy
    allowed = torch.zeros(MAX_Z + 1, dtype=torch.bool)
    allowed[[12, 14, 8]] = True
    counts = torch.tensor([3, 7, 12, 1])
    a = model.sample(counts, torch.Generator().manual_seed(5), allowed=allowed)
    b = model.sample(counts, torch.Generator().manual_seed(5), allowed=allowed)
    assert torch.equal(a.species, b.species) and torch.equal(a.frac, b.frac)
    assert set(a.species.tolist()) <= {12, 14, 8} and a.num_atoms.tolist() == [3, 7, 12, 1]
    assert torch.linalg.det(a.lattice).gt(0).all() and ((a.frac >= 0) & (a.frac < 1)).all()
    # no system asked: only the training crystals' elements (recorded by the normalizer, kept in checkpoints)
    free = model.sample(torch.full((64,), 10), torch.Generator().manual_seed(6))
    assert set(free.species.tolist()) <= {38, 22, 56, 40, 12, 8} == set(model.normalizer.elements)
    assert Normalizer.from_dict(model.normalizer.as_dict()) == model.normalizer
    old = {k: v for k, v in model.normalizer.as_dict().items() if k != "elements"}  # checkpoints before it
    assert Normalizer.from_dict(old).element_support() is None


def test_one_training_step_updates_generator_and_critic(toy):
    structures, model = toy
    data = CrystalDataset(structures, model.normalizer)
    trainer = Trainer(model, TrainConfig(epochs=1, batch_size=3), training_meta(SMALL, data))
    assert set(trainer.optimizers) == {"generator", "critic"}
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    c0 = [p.detach().clone() for p in model.critic.parameters()]
    record = trainer.fit(data)[-1]
    assert {"critic", "generator", "d_real", "d_fake", "matching", "cells"} <= set(record)
    assert all(np.isfinite(v) for v in record.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(c0, model.critic.parameters()))


@pytest.mark.parametrize("distance_rbf", [0, 16])
def test_r1_penalty_is_the_squared_critic_gradient_at_real_crystals_and_finite_on_cubic_cells(distance_rbf):
    cubic = [perovskite("Sr", "Ti", 3.9), perovskite("Ba", "Zr", 4.2)]  # shears 0 in every crystal: std 0
    cfg = SMALL.updated(r1_gamma=10.0, condition_on_elements=False, distance_rbf=distance_rbf)
    torch.manual_seed(0)
    model = CrystalGAN(cfg, Normalizer.fit(cubic))
    b = batch_from_structures(cubic)
    frac = b.frac.clone().requires_grad_(True)
    cell = model.normalizer.lattice_to_model(b.lattice, b.num_atoms).detach().requires_grad_(True)
    onehot = torch.nn.functional.one_hot(b.species, MAX_Z + 1).float()
    score = model.critic(onehot, frac, cell, b.batch, b.edges(), None)[0]
    expected = sum(g.pow(2).sum() for g in torch.autograd.grad(score.sum(), [frac, cell])) / 2
    data = CrystalDataset(cubic, model.normalizer)
    record = Trainer(model, TrainConfig(epochs=1, batch_size=2), training_meta(cfg, data)).fit(data)[-1]
    assert all(np.isfinite(v) for v in record.values())
    torch.manual_seed(0)  # the same critic and step without the penalty: the critic loss differs by gamma/2 r1
    plain = CrystalGAN(cfg.updated(r1_gamma=0.0), Normalizer.fit(cubic))
    base = Trainer(plain, TrainConfig(epochs=1, batch_size=2), training_meta(plain.cfg, data)).fit(data)[-1]
    assert record["critic"] - base["critic"] == pytest.approx(5.0 * record["r1"], rel=1e-3) and base["r1"] == 0
    # (the training step runs one more spectral-norm power iteration: the critic differs a little)
    assert record["r1"] == pytest.approx(float(expected), rel=1e-2) and record["r1"] > 0


class ScriptedMonitor:
    """Healthy, then unhealthy for ever: the trainer must restore and finally stop."""

    every, max_restarts, restart_lr_factor = 1, 2, 0.5

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, trainer):
        self.calls += 1
        return MonitorReport(metrics={"uniqueness": 1.0 if self.calls == 1 else 0.0}, healthy=self.calls == 1,
                             reason="" if self.calls == 1 else "uniqueness 0.00 is 0.00 of the data's 1.00 (< 0.5)")


def test_collapse_restores_the_last_healthy_state_then_stops(toy, tmp_path):
    structures, model = toy
    data = CrystalDataset(structures * 4, model.normalizer)
    trainer = Trainer(model, TrainConfig(epochs=10, batch_size=4), training_meta(SMALL, data))
    monitor = ScriptedMonitor()
    with pytest.raises(TrainingStopped, match="after 3 restarts"):
        trainer.fit(data, checkpoint=tmp_path / "g.pt", monitor=monitor)
    healthy = trainer.last_good["state_dict"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in healthy.items())  # weights put back
    assert trainer.epoch == 4 and [r.get("restart") for r in trainer.history] == [None, 1, 2, 3]
    assert trainer.optimizers["critic"].param_groups[0]["lr"] == pytest.approx(SMALL.optimiser.critic_lr * 0.5**3)
    saved = load_checkpoint(tmp_path / "g.pt")
    assert saved["epoch"] == 4 and all(torch.equal(v, healthy[k]) for k, v in saved["state_dict"].items())


class WarmUpThenCollapsed(ScriptedMonitor):
    """Healthy only by default (warming up) at its first check, then unhealthy: no state was ever judged."""

    def __call__(self, trainer):
        report = super().__call__(trainer)
        return report.model_copy(update={"judged": self.calls > 1})


def test_a_run_that_never_passes_the_monitor_says_so_when_it_stops(toy):
    structures, model = toy
    data = CrystalDataset(structures * 4, model.normalizer)
    trainer = Trainer(model, TrainConfig(epochs=10, batch_size=4), training_meta(SMALL, data))
    with pytest.raises(TrainingStopped, match=r"never judged healthy \(epoch 1\)"):
        trainer.fit(data, monitor=WarmUpThenCollapsed())
    unhealthy_at_once = WarmUpThenCollapsed()
    unhealthy_at_once.calls = 1  # its first report is already unhealthy: no state to go back to
    fresh = Trainer(model, TrainConfig(epochs=10, batch_size=4), training_meta(SMALL, data))
    with pytest.raises(TrainingStopped, match="no healthy state was recorded"):
        fresh.fit(data, monitor=unhealthy_at_once)


class Replay:
    """Stands in for a generator: returns the given crystals, cycling (one crystal = a collapsed generator)."""

    def __init__(self, structures, normalizer):
        self.structures, self.normalizer = structures, normalizer

    def sample(self, counts, generator):
        return batch_from_structures([self.structures[i % len(self.structures)] for i in range(len(counts))])


def test_the_collapse_monitor_tells_a_collapsed_generator_from_a_healthy_one():
    from types import SimpleNamespace

    from tests.test_metrics import cscl, rocksalt, wurtzite

    pairs = [("Mg", "O"), ("Ca", "S"), ("Na", "Cl"), ("Zn", "Se"), ("Li", "F"), ("Ba", "Te")]
    crystals = ([rocksalt(4.2, p) for p in pairs] + [cscl(3.0, p) for p in pairs] + [wurtzite(p) for p in pairs]
                + [perovskite(a, b) for a in ("Sr", "Ba", "Ca") for b in ("Ti", "Zr", "Hf", "Sn")])
    norm = Normalizer.fit(crystals)
    data = CrystalDataset(crystals, norm)
    monitor = CollapseMonitor(data, CollapseConfig(n_samples=16, warmup=0))
    healthy = monitor(SimpleNamespace(ema=SimpleNamespace(module=Replay(crystals[::-1], norm)), epoch=5))
    assert healthy.healthy and healthy.metrics["uniqueness"] > 0.9 and healthy.metrics["coverage"] > 0.3
    collapsed = monitor(SimpleNamespace(ema=SimpleNamespace(module=Replay(crystals[:1], norm)), epoch=5))
    assert not collapsed.healthy and collapsed.metrics["uniqueness"] < 0.1 and "uniqueness" in collapsed.reason
    assert "diversity" in collapsed.reason
    early = CollapseMonitor(data, CollapseConfig(n_samples=16, warmup=10))
    assert early(SimpleNamespace(ema=SimpleNamespace(module=Replay(crystals[:1], norm)), epoch=5)).healthy


def test_the_collapse_monitor_judges_uniqueness_against_the_data():
    """A single-element set whose crystals look alike in the monitor's features (as Carbon-24's do) is not
    collapsed when a generator reproduces it; a generator repeating one of them is."""
    from types import SimpleNamespace

    from tests.test_metrics import cscl, rocksalt, wurtzite

    kinds = [rocksalt(3.6, ("C", "C")), cscl(2.1, ("C", "C")), wurtzite(("C", "C")),
             Structure(Lattice.cubic(1.6), ["C"], [[0, 0, 0]])]
    crystals = [kinds[i % 4] for i in range(32)]  # four prototypes, each repeated: the data's uniqueness is low
    norm = Normalizer.fit(crystals)
    monitor = CollapseMonitor(CrystalDataset(crystals, norm), CollapseConfig(n_samples=16, warmup=0))
    assert monitor.data_uniqueness < 0.5
    same = monitor(SimpleNamespace(ema=SimpleNamespace(module=Replay(crystals[::-1], norm)), epoch=5))
    assert same.healthy and same.metrics["uniqueness"] < 0.5 and same.metrics["uniqueness_ratio"] > 0.5
    one = monitor(SimpleNamespace(ema=SimpleNamespace(module=Replay(crystals[:1], norm)), epoch=5))
    assert not one.healthy and "uniqueness" in one.reason and one.metrics["uniqueness_ratio"] < 0.5


def test_checkpoint_round_trip_and_resume_with_two_optimizers(toy, tmp_path):
    structures, model = toy
    data = CrystalDataset(structures, model.normalizer)
    trainer = Trainer(model, TrainConfig(epochs=2, batch_size=3), training_meta(SMALL, data))
    trainer.fit(data, checkpoint=tmp_path / "g.pt")
    loaded, ckpt = load_model(tmp_path / "g.pt")
    assert isinstance(loaded, CrystalGAN) and ckpt["kind"] == "gan" and ckpt["epoch"] == 2
    assert set(ckpt["optimizer"]["groups"]) == {"generator", "critic"}
    with pytest.raises(ValueError, match="not a diffusion model"):
        load_model(tmp_path / "g.pt", kind="diffusion")
    again = resume_trainer(CrystalGAN(SMALL, model.normalizer), tmp_path / "g.pt", TrainConfig(epochs=3,
                                                                                                  batch_size=3))
    assert again.optimizers["critic"].state_dict()["state"]  # Adam moments came back
    again.fit(data)
    assert again.epoch == 3


def test_train_run_config_validates_the_model_of_the_named_generator():
    from conf.training import TrainRunConfig

    run = TrainRunConfig.model_validate({"generator": "gan", "data": ["x.csv"], "model": {"hidden_dim": 16}})
    assert isinstance(run.model, GANConfig) and str(run.out) == "checkpoints/gan.pt"
    with pytest.raises(ValueError, match="sigma_min"):
        TrainRunConfig.model_validate({"generator": "gan", "data": ["x.csv"], "model": {"sigma_min": 0.1}})
    with pytest.raises(ValueError, match="'diffusion' or 'gan'"):
        TrainRunConfig.model_validate({"generator": "vae", "data": ["x.csv"]})
