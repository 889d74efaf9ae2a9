"""The conditional crystal GAN (Goodfellow et al. 2014): ``x = G(z, c)`` in one forward pass, ``D(x, c)``.

Objective: hinge loss with spectral normalisation (Miyato et al. 2018) rather than WGAN-GP. WGAN-GP's
penalty needs points on the straight line between a real and a generated crystal; with discrete species and
coordinates on a torus that line is not a crystal at all, and the penalty costs a double backward and
several critic steps per generator step. Spectral normalisation bounds the critic's Lipschitz constant on
every input by construction, and hinge + SN trains with one critic step per generator step.

Conditioning: the critic is a projection discriminator on the condition vector (normalised property targets
with "given" flags and the chemical system's element multi-hot), plus an auxiliary property regressor that
the generator is also trained to satisfy. Conditions are dropped at random in training, so the same model
samples unconditionally. Species are discrete: the generator's logits pass through a straight-through
Gumbel-softmax (one-hot forward, soft gradients), masked to the crystal's elements when the chemical system
is given, so sampling with a requested system never leaves it, and otherwise to the elements of the training
data (without it a Carbon-24 GAN put a foreign atom into 47 % of its crystals: Gumbel-max draws from logits
that never saturate). Atom counts are drawn first (from the
training histogram, or the real batch's in training) and given to the generator.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.conditioning import Condition, condition_of
from models.crystal import MASK, MAX_Z, CrystalBatch, Normalizer
from models.gan_config import GANConfig
from models.gan_nets import CrystalCritic, CrystalGenerator, pair_distances, radial_profile


def gumbel(shape: torch.Size, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype).clamp(1e-10, 1 - 1e-10)
    return -torch.log(-torch.log(u))


def moment_gap(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Squared differences of per-column means and standard deviations (real treated as constant)."""
    real = real.detach()
    gap = (fake.mean(0) - real.mean(0)) ** 2
    if fake.shape[0] > 1 and real.shape[0] > 1:
        gap = gap + (fake.std(0) - real.std(0)) ** 2
    return gap.sum()


class CrystalGAN(nn.Module):
    """Generator + critic + hinge training step + one-pass sampling."""

    def __init__(self, cfg: GANConfig, normalizer: Normalizer) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = normalizer
        c, arch = cfg.cond_dim(), cfg.architecture
        self.generator = CrystalGenerator(arch.latent_dim, arch.hidden_dim, arch.generator_layers, arch.heads, c,
                                          arch.max_atoms)
        self.critic = CrystalCritic(arch.hidden_dim, arch.critic_layers, arch.num_freqs, c, len(cfg.properties),
                                    arch.batch_spread, arch.distance_rbf)
        self.float()

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], dict]]:
        opt = self.cfg.optimiser
        return {"generator": (list(self.generator.parameters()), {"lr": opt.generator_lr, "betas": opt.betas}),
                "critic": (list(self.critic.parameters()), {"lr": opt.critic_lr, "betas": opt.betas})}

    def generate(self, num_atoms: torch.Tensor, batch: torch.Tensor, cond: torch.Tensor | None,
                 allowed: torch.Tensor | None, generator: torch.Generator | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lattice (B, 6) model space, frac (N, 3), species one-hot (N, Z) straight-through) from fresh noise.

        ``allowed``: (N, Z) bool, the elements each atom may take (the mask state is always banned).
        """
        dev, dt, arch = num_atoms.device, next(self.parameters()).dtype, self.cfg.architecture
        z_crystal = torch.randn(num_atoms.shape[0], arch.latent_dim, generator=generator, device=dev, dtype=dt)
        z_atoms = torch.randn(batch.shape[0], arch.latent_dim, generator=generator, device=dev, dtype=dt)
        lattice, frac, logits = self.generator(z_crystal, z_atoms, num_atoms, batch, cond)
        ban = torch.zeros(MAX_Z + 1, dtype=torch.bool, device=dev)
        ban[MASK] = True
        support = self.normalizer.element_support()
        if allowed is None and support is not None:  # no system asked: only elements the training data has
            allowed = support.to(dev).expand_as(logits)
        ban = ban.expand_as(logits) if allowed is None else ban | ~allowed
        noisy = logits.masked_fill(ban, -math.inf)
        if arch.species_noise > 0:
            noisy = noisy + arch.species_noise * gumbel(logits.shape, generator, dev, dt)
        noisy = noisy / arch.gumbel_tau
        soft = torch.softmax(noisy, dim=-1)
        hard = nn.functional.one_hot(soft.argmax(-1), MAX_Z + 1).to(dt)
        return lattice, frac, hard - soft.detach() + soft

    def _allowed(self, cond: Condition, batch: torch.Tensor) -> torch.Tensor | None:
        """Per-atom element mask from the element condition (crystals whose condition was dropped: the training
        elements, or all when they were not recorded)."""
        if cond.elements is None:
            return None
        given = cond.elements.sum(-1, keepdim=True) > 0
        support = self.normalizer.element_support()
        free = ~given if support is None else ~given & support.to(given.device)
        return ((cond.elements > 0) | free)[batch]

    def _blur(self, frac: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.cfg.loss.instance_noise == 0:
            return frac
        noise = torch.randn(frac.shape, generator=generator, device=frac.device, dtype=frac.dtype)
        return torch.remainder(frac + self.cfg.loss.instance_noise * noise, 1.0)

    def _aux_loss(self, estimate: torch.Tensor | None, cond: Condition) -> torch.Tensor:
        if estimate is None or cond.given is None or not cond.given.any():
            return torch.zeros((), device=cond.given.device if cond.given is not None else None)
        return ((estimate - cond.props)[cond.given] ** 2).mean()

    def train_step(self, b: CrystalBatch, generator: torch.Generator, optimizers: dict[str, torch.optim.Optimizer],
                   grad_clip: float) -> dict[str, float]:
        """One critic update (hinge) and one generator update on a real batch, fakes with the same atom counts
        and conditions."""
        n, dev = b.num_graphs, b.frac.device
        cond = condition_of(self.cfg, b, generator)
        cvec = cond.vector(self.cfg, n, dev)
        allowed = self._allowed(cond, b.batch)
        edges = b.edges()
        real_lattice = self.normalizer.lattice_to_model(b.lattice, b.num_atoms)
        real_species = nn.functional.one_hot(b.species, MAX_Z + 1).to(b.frac.dtype)

        opt_d, opt_g = optimizers["critic"], optimizers["generator"]
        with torch.no_grad():
            fake = self.generate(b.num_atoms, b.batch, cvec, allowed, generator)
        real_frac, real_cell = self._blur(b.frac, generator), real_lattice
        penalised = self.cfg.loss.r1_gamma > 0
        if penalised:  # R1 differentiates the score by the real inputs
            real_frac, real_cell = real_frac.detach().requires_grad_(), real_cell.detach().requires_grad_()
        d_real, aux_real, phi_real = self.critic(real_species, real_frac, real_cell, b.batch, edges, cvec)
        d_fake, _, _ = self.critic(fake[2], self._blur(fake[1], generator), fake[0], b.batch, edges, cvec)
        aux_d = self._aux_loss(aux_real, cond)
        loss_d = torch.relu(1 - d_real).mean() + torch.relu(1 + d_fake).mean() + self.cfg.loss.aux_weight * aux_d
        r1 = torch.zeros((), device=dev)
        if penalised:
            grads = torch.autograd.grad(d_real.sum(), [real_frac, real_cell], create_graph=True)
            r1 = sum(g.pow(2).sum() for g in grads) / n
            loss_d = loss_d + 0.5 * self.cfg.loss.r1_gamma * r1
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), grad_clip)
        opt_d.step()

        lattice, frac, species = self.generate(b.num_atoms, b.batch, cvec, allowed, generator)
        self.critic.requires_grad_(False)
        d_gen, aux_gen, phi_gen = self.critic(species, self._blur(frac, generator), lattice, b.batch, edges, cvec)
        self.critic.requires_grad_(True)
        aux_g = self._aux_loss(aux_gen, cond)
        matching = ((phi_gen.mean(0) - phi_real.detach().mean(0)) ** 2).sum()
        cells = moment_gap(lattice, real_lattice)
        elements = (species.mean(0) - real_species.mean(0)).abs().sum()
        scale = self.normalizer.length_scale * b.num_atoms.to(frac.dtype).pow(1 / 3)  # model units -> Å
        dist = pair_distances(frac, lattice, b.batch, *edges) * scale[b.batch[edges[0]]]
        overlap = (torch.relu(self.cfg.loss.min_distance - dist) ** 2).mean() if dist.numel() else dist.sum()
        structure = self._structure_gap(frac, lattice, b, edges, real_lattice)
        loss_g = (-d_gen.mean() + self.cfg.loss.aux_weight * aux_g + self.cfg.loss.feature_matching * matching
                  + self.cfg.loss.lattice_matching * cells + self.cfg.loss.repulsion * overlap
                  + self.cfg.loss.species_matching * elements + self.cfg.loss.structure_matching * structure)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        nn.utils.clip_grad_norm_(self.generator.parameters(), grad_clip)
        opt_g.step()
        return {"loss": loss_d.item() + loss_g.item(), "critic": loss_d.item(), "generator": loss_g.item(),
                "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item(), "aux": aux_d.item(),
                "matching": matching.item(), "cells": cells.item(), "overlap": overlap.item(),
                "elements": elements.item(), "r1": r1.item(), "structure": structure.item()}

    def _structure_gap(self, frac: torch.Tensor, lattice: torch.Tensor, b: CrystalBatch,
                       edges: tuple[torch.Tensor, torch.Tensor], real_lattice: torch.Tensor) -> torch.Tensor:
        """Moment gap of the generated crystals' radial distributions to the real batch's (0 when off)."""
        if self.cfg.loss.structure_matching == 0:
            return torch.zeros((), device=frac.device)
        centers = torch.linspace(0.0, self.cfg.loss.profile_max, self.cfg.loss.profile_bins, device=frac.device,
                                 dtype=frac.dtype)
        with torch.no_grad():
            real = radial_profile(b.frac, real_lattice, b.batch, *edges, b.num_atoms, centers)
        return moment_gap(radial_profile(frac, lattice, b.batch, *edges, b.num_atoms, centers), real)

    @torch.no_grad()
    def sample(self, num_atoms: torch.Tensor, generator: torch.Generator, cond: Condition | None = None,
               allowed: torch.Tensor | None = None) -> CrystalBatch:
        """``len(num_atoms)`` crystals in one generator pass.

        Parameters
        ----------
        cond
            Normalised property targets / given flags / element multi-hot per crystal, or None.
        allowed
            (MAX_Z + 1,) bool: the only elements species are drawn from (default: the training data's
            elements, when the checkpoint recorded them).
        """
        self.eval()
        dev = next(self.parameters()).device
        num_atoms = num_atoms.to(dev)
        n = int(num_atoms.shape[0])
        batch = torch.repeat_interleave(torch.arange(n, device=dev), num_atoms)
        cvec = (cond or Condition(None, None, None)).vector(self.cfg, n, dev)
        per_atom = None if allowed is None else allowed.to(dev)[None, :].expand(batch.shape[0], -1)
        lattice, frac, species = self.generate(num_atoms, batch, cvec, per_atom, generator)
        return CrystalBatch(frac, species.argmax(-1), self.normalizer.lattice_from_model(lattice, num_atoms),
                            num_atoms, batch)

