"""The diffusion model: forward processes, the wrapped-normal score, invariances, checkpoints, learning."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from models.checkpoint import load_checkpoint, save_checkpoint
from models.crystal import Normalizer, batch_from_structures, structures_from_batch
from models.diffusion import CrystalDiffusion, DiffusionConfig
from models.schedules import cosine_alpha_bar, mask_probability, wrapped_normal_log_density, wrapped_normal_score

torch.set_num_threads(1)


def _perovskite(a, sp=("Sr", "Ti", "O")):
    return Structure(Lattice.cubic(a), [sp[0], sp[1], sp[2], sp[2], sp[2]],
                     [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])


@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.3, 0.5, 1.0])
def test_wrapped_normal_score_matches_finite_differences(sigma):
    x = torch.linspace(-1.3, 1.3, 41, dtype=torch.float64)
    s = torch.tensor(sigma, dtype=torch.float64)
    h = 1e-6
    fd = (wrapped_normal_log_density(x + h, s) - wrapped_normal_log_density(x - h, s)) / (2 * h)
    assert torch.allclose(wrapped_normal_score(x, s), fd, atol=1e-5 * max(1.0, 1 / sigma**2))
    assert torch.allclose(wrapped_normal_score(x + 1.0, s), wrapped_normal_score(x, s))  # periodic


def test_forward_processes_match_their_closed_forms():
    g = torch.Generator().manual_seed(0)
    l0 = torch.randn(20000, 6, generator=g) * 0.3 + 1.0
    t = torch.full((20000,), 0.4)
    eps = torch.randn(l0.shape, generator=g)
    lt = CrystalDiffusion.noise_lattice(l0, t, eps)
    ab = cosine_alpha_bar(torch.tensor(0.4))
    assert torch.allclose(lt, ab.sqrt() * l0 + (1 - ab).sqrt() * eps)
    assert float((lt - ab.sqrt() * l0).var()) == pytest.approx(float(1 - ab), rel=0.03)
    sigma = torch.full((20000, 1), 0.2)
    f0 = torch.rand(20000, 1, generator=g)
    e = torch.randn(f0.shape, generator=g)
    ft, score = CrystalDiffusion.noise_frac(f0, sigma, e)
    assert bool(((ft >= 0) & (ft < 1)).all())
    assert torch.allclose(score, wrapped_normal_score(0.2 * e, sigma))
    a0 = torch.full((20000,), 8)
    at, masked = CrystalDiffusion.mask_species(a0, torch.full((20000,), 0.6), torch.rand(20000, generator=g))
    assert float(masked.float().mean()) == pytest.approx(float(mask_probability(torch.tensor(0.6))), abs=0.01)
    assert bool((at[masked] == 0).all()) and bool((at[~masked] == 8).all())


def _model(props=()):
    structures = [_perovskite(3.9), _perovskite(4.1, ("Ba", "Ti", "O"))]
    norm = Normalizer.fit(structures, np.array([[1.0], [2.0]]) if props else None, props)
    torch.manual_seed(0)
    return CrystalDiffusion(DiffusionConfig(hidden_dim=32, num_layers=2, properties=props), norm), structures


def test_denoiser_is_permutation_equivariant_and_rotation_translation_invariant():
    model, structures = _model()
    b = batch_from_structures(structures)
    lat = model.normalizer.lattice_to_model(b.lattice, b.num_atoms)
    t = torch.tensor([0.3, 0.7])
    out = model.denoiser(b.species, b.frac, lat, t, b.batch, b.edges())
    # permute the atoms of the first crystal
    perm = torch.tensor([3, 1, 4, 0, 2, 5, 6, 7, 8, 9])
    pb = b.replace(frac=b.frac[perm], species=b.species[perm])
    pout = model.denoiser(pb.species, pb.frac, lat, t, pb.batch, pb.edges())
    assert torch.allclose(pout[0], out[0], atol=1e-5)
    assert torch.allclose(pout[1], out[1][perm], atol=1e-5) and torch.allclose(pout[2], out[2][perm], atol=1e-5)
    # rotate the lattices: the model sees the rotation-invariant symmetric factor
    theta = 0.83
    q = torch.tensor([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]],
                     dtype=torch.float32)
    rlat = model.normalizer.lattice_to_model(b.lattice @ q.T, b.num_atoms)
    assert torch.allclose(rlat, lat, atol=1e-5)
    # shift every fractional coordinate by the same vector
    sb = b.replace(frac=torch.remainder(b.frac + torch.tensor([0.31, 0.77, 0.05]), 1.0))
    sout = model.denoiser(sb.species, sb.frac, lat, t, sb.batch, sb.edges())
    for a, c in zip(sout, out):
        assert torch.allclose(a, c, atol=1e-4)


def test_loss_is_invariant_to_rotation_and_translation():
    model, structures = _model()
    b = batch_from_structures(structures)
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2)))[0]
    moved = b.replace(lattice=b.lattice @ q.T, frac=torch.remainder(b.frac + 0.4, 1.0))
    assert float(model.loss(b, torch.Generator().manual_seed(5))[0]) == pytest.approx(
        float(model.loss(moved, torch.Generator().manual_seed(5))[0]), rel=1e-4)


def test_structures_roundtrip_through_the_batch():
    structures = [_perovskite(3.9), _perovskite(4.1, ("Ba", "Ti", "O"))]
    back = structures_from_batch(batch_from_structures(structures, dtype=torch.float64))
    assert all(a.matches(b) for a, b in zip(structures, back))


def test_checkpoints_load_weights_only_even_after_mace_import(tmp_path):
    import mace.calculators  # noqa: F401  (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD for the process)

    model, _ = _model()
    save_checkpoint(tmp_path / "ok.pt", {"kind": "diffusion", "state_dict": model.state_dict()})
    assert "state_dict" in load_checkpoint(tmp_path / "ok.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("arbitrary code ran",))

    torch.save({"format": "matloop-checkpoint-1", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only|weights_only|Unsupported global"):
        load_checkpoint(tmp_path / "evil.pt")


def test_sampling_is_seeded_and_never_leaves_the_chemical_system(tiny_diffusion):
    from models.api import load_diffusion, sample_structures
    from models.sampler import SamplerConfig

    model, ckpt = load_diffusion(tiny_diffusion)
    cfg = SamplerConfig(steps=20)
    a = sample_structures(model, ckpt, 48, 7, cfg, elements=["Mg", "O"], max_atoms=12)
    b = sample_structures(model, ckpt, 48, 7, cfg, elements=["Mg", "O"], max_atoms=12)
    assert all(x.matches(y, scale=False) or np.allclose(x.frac_coords, y.frac_coords) for x, y in zip(a, b))
    assert [x.composition for x in a] == [y.composition for y in b]
    assert all({el.symbol for el in s.composition.elements} <= {"Mg", "O"} for s in a)  # 0 % leave Mg-O
    assert all(len(s) <= 12 for s in a)
    c = sample_structures(model, ckpt, 48, 8, cfg, elements=["Mg", "O"], max_atoms=12)
    assert [x.composition for x in c] != [y.composition for y in a]


def test_unconditional_sampling_draws_only_the_training_elements():
    from models.sampler import SamplerConfig, sample

    model, _ = _model()  # untrained: its species logits spread over every element
    counts = torch.full((16,), 5)
    free = sample(model, counts, SamplerConfig(steps=5), torch.Generator().manual_seed(1))
    assert set(free.species.tolist()) <= {38, 22, 56, 8} == set(model.normalizer.elements)
    model.normalizer = Normalizer.from_dict({**model.normalizer.as_dict(), "elements": []})  # older checkpoints
    old = sample(model, counts, SamplerConfig(steps=5), torch.Generator().manual_seed(1))
    assert not set(old.species.tolist()) <= {38, 22, 56, 8}
