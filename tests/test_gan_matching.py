"""The GAN's direct pulls towards the data: the radial-distribution match and latent-driven species."""

import math

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from models.crystal import MASK, MAX_Z, Normalizer, batch_from_structures
from models.gan import CrystalGAN, GANConfig
from models.gan_nets import radial_profile

SMALL = GANConfig(hidden_dim=32, latent_dim=8, generator_layers=1, critic_layers=2, num_freqs=4)


def perovskite(a_site: str, b_site: str, a: float) -> Structure:
    return Structure(Lattice.cubic(a), [a_site, b_site, "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])


def _model_lattice(model: CrystalGAN, b) -> torch.Tensor:
    return model.normalizer.lattice_to_model(b.lattice.double(), b.num_atoms).float()


def test_radial_profile_is_the_smoothed_histogram_of_nearest_image_distances_in_atomic_spacings():
    rng = np.random.default_rng(4)
    structures = [perovskite("Sr", "Ti", 3.9),
                  Structure(Lattice([[4.0, 0, 0], [2.9, 2.6, 0], [0.7, 1.1, 3.8]]), ["Mg", "O", "O", "Si"],
                            rng.random((4, 3)))]  # sheared: the nearest image is not the per-axis rounding
    normalizer = Normalizer.fit(structures)
    model = CrystalGAN(SMALL, normalizer)
    b = batch_from_structures(structures)
    centers = torch.linspace(0.0, 2.0, 32)
    got = radial_profile(b.frac, _model_lattice(model, b), b.batch, *b.edges(), b.num_atoms, centers).numpy()
    width = 2.0 / 31
    for row, s in zip(got, structures):
        d = np.array([s.get_distance(i, j) for i in range(len(s)) for j in range(len(s)) if i != j])
        d = d / normalizer.length_scale  # pymatgen's nearest-image distance in the data's atomic spacing
        expected = np.exp(-(((d[:, None] - centers.numpy()) / width) ** 2)).sum(0) / len(s)
        assert np.allclose(row, expected, atol=1e-4)
    # the perovskite's bonds: B-O a/2 (6 ordered pairs), A-O and O-O a/sqrt2 (24), A-B a sqrt3/2 (2)
    peak = centers[got[0].argmax()].item() * normalizer.length_scale
    assert abs(peak - 3.9 / math.sqrt(2)) < width * normalizer.length_scale


def test_structure_matching_is_zero_on_the_data_and_pulls_a_displaced_atom_back():
    structures = [perovskite("Sr", "Ti", 3.9), perovskite("Ba", "Zr", 4.2)]
    model = CrystalGAN(SMALL.updated(structure_matching=1.0), Normalizer.fit(structures))
    b = batch_from_structures(structures)
    lattice, edges = _model_lattice(model, b), b.edges()
    assert model._structure_gap(b.frac, lattice, b, edges, lattice).item() == 0.0
    frac = b.frac.clone()
    frac[1] += torch.tensor([0.12, -0.08, 0.05])  # the Ti atom off its site
    frac = frac.requires_grad_(True)
    start = model._structure_gap(frac, lattice, b, edges, lattice)
    assert start.item() > 0
    opt = torch.optim.Adam([frac], lr=0.005)
    for _ in range(300):
        opt.zero_grad()
        model._structure_gap(frac, lattice, b, edges, lattice).backward()
        opt.step()
    end = model._structure_gap(frac, lattice, b, edges, lattice).item()
    assert end < 0.05 * start.item()
    # the crystal's bond lengths are back (the gap is translation invariant: compare distances, not positions)
    moved = Structure(structures[0].lattice, structures[0].species, frac.detach()[:5].numpy())
    assert np.allclose(np.sort(moved.distance_matrix.ravel()), np.sort(structures[0].distance_matrix.ravel()),
                       atol=0.1)
    off = CrystalGAN(SMALL, model.normalizer)  # default: off, and the training step's loss is unchanged
    assert off._structure_gap(frac, lattice, b, edges, lattice).item() == 0.0


def test_without_species_noise_the_species_are_the_argmax_of_the_latent_driven_logits():
    structures = [perovskite("Sr", "Ti", 3.9), perovskite("Ba", "Zr", 4.2)]
    torch.manual_seed(0)
    cfg = SMALL.updated(species_noise=0.0, condition_on_elements=False)  # no condition input
    model = CrystalGAN(cfg, Normalizer.fit(structures))
    model.eval()
    counts = torch.tensor([5, 5, 3])
    batch = torch.repeat_interleave(torch.arange(3), counts)
    _, _, species = model.generate(counts, batch, None, None, torch.Generator().manual_seed(7))
    rng = torch.Generator().manual_seed(7)  # the same latents, drawn in generate's order
    z_crystal = torch.randn(3, SMALL.architecture.latent_dim, generator=rng)
    z_atoms = torch.randn(13, SMALL.architecture.latent_dim, generator=rng)
    _, _, logits = model.generator(z_crystal, z_atoms, counts, batch, None)
    banned = ~model.normalizer.element_support().expand_as(logits).clone()
    banned[:, MASK] = True
    expected = logits.masked_fill(banned, -math.inf).argmax(-1)
    assert torch.equal(species.argmax(-1), expected)
    assert species.shape == (13, MAX_Z + 1)
    # with noise (the default) the same latents give other draws for some atoms
    noisy = CrystalGAN(cfg.updated(species_noise=1.0), model.normalizer)
    noisy.load_state_dict(model.state_dict())
    drawn = noisy.generate(counts, batch, None, None, torch.Generator().manual_seed(7))[2].argmax(-1)
    assert (drawn != species.argmax(-1)).any()
