"""Learning is real: the GAN learns a few perovskites' validity and cell statistics, and follows a property."""

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from models.api import sample_structures, training_meta
from models.crystal import Normalizer
from models.data import CrystalDataset
from models.gan import CrystalGAN, GANConfig
from models.training import TrainConfig, Trainer
from tasks.metrics.validity import composition_valid, structure_valid
from tests.test_diffusion_learning import PEROVSKITES, perovskite  # the same toy set as the diffusion model

pytestmark = pytest.mark.slow


def _train(structures, props, names, steps, copies, seed=0):
    torch.manual_seed(seed)
    norm = Normalizer.fit(structures, props, names)
    data = CrystalDataset(structures * copies, norm, None if props is None else np.tile(props, (copies, 1)))
    cfg = GANConfig(hidden_dim=64, latent_dim=32, generator_layers=2, critic_layers=2, properties=tuple(names),
                    condition_on_elements=False)
    model = CrystalGAN(cfg, norm)
    trainer = Trainer(model, TrainConfig(epochs=steps, batch_size=len(data), ema_decay=0.99, seed=seed),
                      training_meta(cfg, data))
    trainer.fit(data)
    return trainer.ema.module, {"num_atoms_hist": data.num_atoms_histogram()}


def _stats(samples):
    vpa = np.array([s.volume / len(s) for s in samples])
    return (np.mean([structure_valid(s) for s in samples]), np.mean([composition_valid(s.composition)
                                                                      for s in samples]), vpa.mean(), vpa.std())


def test_samples_approach_the_validity_and_cell_statistics_of_the_data():
    torch.set_num_threads(1)
    train = [perovskite(*p) for p in PEROVSKITES]
    model, ckpt = _train(train, None, (), steps=1000, copies=8)
    samples = sample_structures(model, ckpt, 64, seed=1)
    struct_ok, comp_ok, vpa_mean, vpa_std = _stats(samples)
    data_vpa = np.array([s.volume / len(s) for s in train])
    # after 1000 steps the samples are valid and their cells match the data's, but their compositions
    # collapse onto a few formulas (printed below): the known GAN weakness the collapse monitor watches for
    assert struct_ok >= 0.8 and comp_ok >= 0.7, (struct_ok, comp_ok)
    assert abs(vpa_mean - data_vpa.mean()) < 0.35 * data_vpa.mean(), (vpa_mean, data_vpa.mean())
    assert vpa_std < 3 * data_vpa.std() + 0.5, (vpa_std, data_vpa.std())
    formulas = {s.composition.reduced_formula for s in samples}
    matcher = StructureMatcher()
    close = sum(any(matcher.fit(s, t) for t in train) for s in samples[:16])
    print(f"validity {struct_ok:.2f}/{comp_ok:.2f}, volume/atom {vpa_mean:.2f}±{vpa_std:.2f} "
          f"(data {data_vpa.mean():.2f}±{data_vpa.std():.2f}), {len(formulas)} formulas, {close}/16 match training")


def test_property_conditioning_moves_samples_in_the_asked_direction():
    torch.set_num_threads(1)
    lattice_constants = np.linspace(3.9, 5.1, 24)
    train = [Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
             .get_primitive_structure() for a in lattice_constants]
    volume = np.array([[s.volume / len(s)] for s in train])  # toy property: volume per atom, Å3
    model, ckpt = _train(train, volume, ("volume_per_atom",), steps=1000, copies=4)
    low = sample_structures(model, ckpt, 48, 3, targets={"volume_per_atom": (volume.min(), volume.min())})
    high = sample_structures(model, ckpt, 48, 3, targets={"volume_per_atom": (volume.max(), volume.max())})
    v_low = np.mean([s.volume / len(s) for s in low])
    v_high = np.mean([s.volume / len(s) for s in high])
    assert v_high - v_low > 0.3 * (volume.max() - volume.min()), (v_low, v_high)
