"""The crystal diffusion model: three forward processes (corruption) and the training loss.

* Lattice: DDPM with a cosine schedule on the lattice's symmetric polar factor S = (L L^T)^(1/2) (6 numbers,
  rotation invariant, as MatterGen), scaled by the expected cell size; the denoiser predicts the noise (Ho et
  al.'s epsilon-prediction MSE). A raw lattice matrix in a fixed orientation cannot be denoised by a
  rotation-invariant network; its symmetric factor can.
* Fractional coordinates: a variance-exploding wrapped normal on the torus (DiffCSP); the denoiser
  predicts the wrapped-normal score, normalised by its expected magnitude.
* Species: absorbing-state D3PM (Austin et al. 2021): each atom's element is replaced by a mask token with
  probability 1 - alpha_bar(t); the denoiser predicts the clean element of masked atoms (cross-entropy).
  Absorbing beats a continuous one-hot relaxation here because it is exactly discrete: unmasking draws an
  element from the predicted distribution restricted to the allowed elements, so a requested chemical
  system is enforced with no sample leaving it, and a partially given composition is a natural condition.

Conditioning is classifier-free: the condition vector (normalised property values, their "given" flags and
a multi-hot chemical system) is dropped at random during training.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from models.conditioning import Condition, cond_dim, condition_of, element_multi_hot
from models.crystal import MASK, CrystalBatch, Normalizer
from models.cspnet import CSPNet
from models.schedules import cosine_alpha_bar, mask_probability, score_norm, sigma_schedule, wrapped_normal_score
from models.strict import Strict


class DiffusionConfig(Strict):
    """Architecture and process settings, stored in every checkpoint."""

    hidden_dim: int = Field(128, ge=8)
    num_layers: int = Field(4, ge=1)
    num_freqs: int = Field(8, ge=1)
    properties: tuple[str, ...] = Field((), description="Property columns the model is conditioned on.")
    condition_on_elements: bool = True
    cond_drop_prob: float = Field(0.15, ge=0, le=1, description="Probability of dropping each condition.")
    sigma_min: float = 0.005
    sigma_max: float = 0.5
    loss_weights: tuple[float, float, float] = Field((1.0, 1.0, 1.0), description="lattice, coords, species")

    def cond_dim(self) -> int:
        return cond_dim(self)


__all__ = ["Condition", "CrystalDiffusion", "DiffusionConfig", "element_multi_hot"]


class CrystalDiffusion(nn.Module):
    """Denoiser + forward processes + loss; sampling lives in :mod:`models.sampler`."""

    def __init__(self, cfg: DiffusionConfig, normalizer: Normalizer) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = normalizer
        self.denoiser = CSPNet(cfg.hidden_dim, cfg.num_layers, cfg.num_freqs, cfg.cond_dim())
        grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
        norms = score_norm(sigma_schedule(grid, cfg.sigma_min, cfg.sigma_max), 4000, torch.Generator().manual_seed(0))
        self.register_buffer("_score_norm_grid", norms.float(), persistent=False)
        self.float()  # float32 whatever torch's process-wide default is (MACE sets it to float64)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return sigma_schedule(t, self.cfg.sigma_min, self.cfg.sigma_max)

    def score_norm(self, t: torch.Tensor) -> torch.Tensor:
        return self._score_norm_grid[(t.clamp(0, 1) * 1000).round().long()]

    # ---- forward processes -------------------------------------------------------------------------------
    @staticmethod
    def noise_lattice(l0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        ab = cosine_alpha_bar(t)[:, None]
        return ab.sqrt() * l0 + (1 - ab).sqrt() * eps

    @staticmethod
    def noise_frac(f0: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Noised coordinates and the score of the wrapped normal they were drawn from."""
        return torch.remainder(f0 + sigma * eps, 1.0), wrapped_normal_score(sigma * eps, sigma)

    @staticmethod
    def mask_species(a0: torch.Tensor, t_atom: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masked = u < mask_probability(t_atom)
        return torch.where(masked, torch.full_like(a0, MASK), a0), masked

    def loss(self, b: CrystalBatch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Weighted sum of the lattice epsilon MSE, the normalised coordinate score MSE and species CE."""
        n, dev, dt = b.num_graphs, b.frac.device, b.frac.dtype
        t = torch.rand(n, generator=generator, device=dev, dtype=dt) * (1 - 1e-3) + 1e-3
        l0 = self.normalizer.lattice_to_model(b.lattice, b.num_atoms)
        eps_l = torch.randn(l0.shape, generator=generator, device=dev, dtype=dt)
        lt = self.noise_lattice(l0, t, eps_l)
        sigma = self.sigma(t)[b.batch][:, None]
        eps_f = torch.randn(b.frac.shape, generator=generator, device=dev, dtype=dt)
        ft, score = self.noise_frac(b.frac, sigma, eps_f)
        norm = self.score_norm(t)[b.batch][:, None]
        at, masked = self.mask_species(b.species, t[b.batch], torch.rand(b.species.shape, generator=generator,
                                                                          device=dev))
        cond = condition_of(self.cfg, b, generator).vector(self.cfg, n, dev)
        eps_hat, score_hat, logits = self.denoiser(at, ft, lt, t, b.batch, b.edges(), cond)
        loss_l = ((eps_hat - eps_l) ** 2).mean()
        loss_f = ((score_hat - score / norm.sqrt()) ** 2).mean()
        loss_a = (nn.functional.cross_entropy(logits[masked], b.species[masked]) if masked.any()
                  else logits.sum() * 0.0)
        w = self.cfg.loss_weights
        total = w[0] * loss_l + w[1] * loss_f + w[2] * loss_a
        return total, {"lattice": loss_l.item(), "coords": loss_f.item(), "species": loss_a.item()}
