"""Sampling the crystal diffusion: ancestral DDPM (lattice), predictor-corrector (coordinates), absorbing
unmasking (species), with classifier-free guidance and a hard mask on the allowed elements.

All randomness comes from the ``torch.Generator`` passed in: the same seed gives the same crystals.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from models.crystal import MASK, MAX_Z, CrystalBatch, fully_connected_edges
from models.diffusion import Condition, CrystalDiffusion
from models.schedules import cosine_alpha_bar, mask_probability
from models.strict import Strict


class SamplerConfig(Strict):
    steps: int = Field(1000, ge=1, description="Reverse steps (1000 default; <= 200 is the fast setting).")
    corrector_steps: int = Field(1, ge=0, description="Langevin corrector steps per step (coordinates).")
    step_lr: float = Field(1e-5, gt=0, description="Langevin step size at sigma_min.")
    guidance_scale: float = Field(1.0, ge=0, description="Classifier-free guidance w: 0 unconditional, "
                                  "1 conditional, > 1 stronger.")


class Predictor:
    """One denoiser evaluation with classifier-free guidance and the element mask applied to the logits."""

    def __init__(self, model: CrystalDiffusion, cond: Condition | None, allowed: torch.Tensor | None,
                 guidance: float, num_graphs: int, device: torch.device) -> None:
        self.model = model
        self.cond = None if cond is None else cond.vector(model.cfg, num_graphs, device)
        self.uncond = Condition(None, None, None).vector(model.cfg, num_graphs, device)
        self.guidance = guidance
        ban = torch.zeros(MAX_Z + 1, dtype=torch.bool, device=device)
        ban[MASK] = True
        if allowed is not None:
            ban |= ~allowed
        self.ban = ban

    def __call__(self, species, frac, lattice, t, batch, edges):
        run = self.model.denoiser
        w = self.guidance
        if self.cond is None or w == 0.0:
            eps, score, logits = run(species, frac, lattice, t, batch, edges, self.uncond)
            logp = torch.log_softmax(logits.masked_fill(self.ban, -math.inf), -1)
        elif w == 1.0:
            eps, score, logits = run(species, frac, lattice, t, batch, edges, self.cond)
            logp = torch.log_softmax(logits.masked_fill(self.ban, -math.inf), -1)
        else:
            ec, sc, lc = run(species, frac, lattice, t, batch, edges, self.cond)
            eu, su, lu = run(species, frac, lattice, t, batch, edges, self.uncond)
            eps, score = eu + w * (ec - eu), su + w * (sc - su)
            lpc = torch.log_softmax(lc.masked_fill(self.ban, -math.inf), -1)
            lpu = torch.log_softmax(lu.masked_fill(self.ban, -math.inf), -1)
            logp = torch.log_softmax((lpu + w * (lpc - lpu)).nan_to_num(nan=-math.inf), -1)
        return eps, score, logp


@torch.no_grad()
def sample(model: CrystalDiffusion, num_atoms: torch.Tensor, cfg: SamplerConfig, generator: torch.Generator,
           cond: Condition | None = None, allowed: torch.Tensor | None = None) -> CrystalBatch:
    """Draw ``len(num_atoms)`` crystals.

    Parameters
    ----------
    num_atoms
        Atoms per crystal (B,).
    cond
        Normalised property values / given flags / element multi-hot per crystal, or None (unconditional).
    allowed
        (MAX_Z + 1,) bool: elements that may appear; species are only ever drawn from these (default: the
        training data's elements, when the checkpoint recorded them).
    """
    model.eval()
    dev = next(model.parameters()).device
    num_atoms = num_atoms.to(dev)
    n = int(num_atoms.shape[0])
    batch = torch.repeat_interleave(torch.arange(n, device=dev), num_atoms)
    edges = fully_connected_edges(num_atoms, batch)
    if allowed is None:  # no system asked: only elements the training data has
        allowed = model.normalizer.element_support()
    predict = Predictor(model, cond, None if allowed is None else allowed.to(dev), cfg.guidance_scale, n, dev)

    dt = next(model.parameters()).dtype

    def randn(shape):
        return torch.randn(shape, generator=generator, device=dev, dtype=dt)

    lattice = randn((n, 6))
    frac = torch.rand((batch.shape[0], 3), generator=generator, device=dev, dtype=dt)
    species = torch.full((batch.shape[0],), MASK, dtype=torch.long, device=dev)
    for k in range(cfg.steps, 0, -1):
        t_val, s_val = k / cfg.steps, (k - 1) / cfg.steps
        t = torch.full((n,), t_val, device=dev, dtype=dt)
        sigma_t = model.sigma(torch.tensor(t_val))
        sigma_s = model.sigma(torch.tensor(s_val))
        norm = model.score_norm(torch.tensor(t_val)).sqrt()
        for _ in range(cfg.corrector_steps):  # Langevin corrector on the coordinates
            _, score, _ = predict(species, frac, lattice, t, batch, edges)
            eta = cfg.step_lr * (sigma_t / model.cfg.sigma_min) ** 2
            frac = torch.remainder(frac + eta * score * norm + (2 * eta).sqrt() * randn(frac.shape), 1.0)
        eps, score, logp = predict(species, frac, lattice, t, batch, edges)
        # coordinates: reverse step of the variance-exploding process
        var = sigma_t**2 - sigma_s**2
        std = (sigma_s**2 * var / sigma_t**2).sqrt()
        frac = torch.remainder(frac + var * score * norm + (std * randn(frac.shape) if k > 1 else 0.0), 1.0)
        # lattice: ancestral DDPM step t -> s
        ab_t, ab_s = cosine_alpha_bar(torch.tensor(t_val)), cosine_alpha_bar(torch.tensor(s_val))
        alpha = ab_t / ab_s
        beta = 1 - alpha
        mean = (lattice - beta / (1 - ab_t).sqrt() * eps) / alpha.sqrt()
        var_l = beta * (1 - ab_s) / (1 - ab_t)
        lattice = mean + (var_l.sqrt() * randn(lattice.shape) if k > 1 else 0.0)
        # species: unmask a share of the masked atoms, drawing from the (allowed) predicted distribution
        m_t, m_s = mask_probability(torch.tensor(t_val)), mask_probability(torch.tensor(s_val))
        p_unmask = ((m_t - m_s) / m_t).clamp(0, 1) if k > 1 else torch.tensor(1.0)
        masked = species == MASK
        reveal = masked & (torch.rand(species.shape, generator=generator, device=dev) < p_unmask)
        if reveal.any():
            draws = torch.multinomial(logp[reveal].exp(), 1, generator=generator).squeeze(-1)
            species = species.clone()
            species[reveal] = draws
    lattice = model.normalizer.lattice_from_model(lattice, num_atoms)
    return CrystalBatch(frac, species, lattice, num_atoms, batch)
