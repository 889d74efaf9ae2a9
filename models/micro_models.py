"""The two microstructure generators, trainable by the shared :class:`models.training.Trainer`.

* :class:`MicroGAN` (a ``SteppedModel``): conditional GAN, hinge loss with a spectrally normalised projection
  critic, ``n_critic`` critic steps per generator step; samples are thresholded logits.
* :class:`MicroDiffusion` (a ``LossModel``): conditional DDPM on images in {-1, +1}, ε-prediction on the cosine
  schedule, the condition dropped with probability ``p_uncond`` in training; sampled by DDIM with classifier-free
  guidance, then thresholded at 0.

A batch is ``(images, conditions)``: images ``(B, 1, H, W)`` in {-1, +1}, conditions ``(B, n)`` normalised.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from models.micro_nets import MicroCritic, MicroGenerator, MicroUNet
from models.schedules import cosine_alpha_bar
from models.strict import Strict

WIDTH = "a multiple of 8 (the group norm's groups)"


class MicroGANConfig(Strict):
    """The conditional GAN's architecture and optimiser (``n_conditions`` and ``size`` come from the dataset)."""

    n_conditions: int = Field(2, ge=1, description="Process conditions the images are generated from.")
    size: Literal[32, 64, 128, 256] = Field(64, description="Image edge in pixels (upsampled from a 4 x 4 latent).")
    z_channels: int = Field(16, ge=1, le=512, description="Channels of the 4 x 4 spatial latent.")
    generator_width: Literal[16, 32, 64, 128, 256, 512] = Field(64, description="Generator channels after the latent "
                                                                "(halved per level, at least 16).")
    critic_width: int = Field(32, ge=8, le=256, description="Critic channels at its first level (doubled per level).")
    n_critic: int = Field(2, ge=1, le=10, description="Critic steps per generator step.")
    lr_generator: float = Field(2e-4, gt=0, le=1e-1)
    lr_critic: float = Field(2e-4, gt=0, le=1e-1)


class MicroGAN(nn.Module):
    def __init__(self, cfg: MicroGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.generator = MicroGenerator(cfg.n_conditions, cfg.size, z_channels=cfg.z_channels,
                                        width=cfg.generator_width)
        self.critic = MicroCritic(cfg.n_conditions, cfg.size, width=cfg.critic_width)

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], dict]]:
        return {"generator": (list(self.generator.parameters()), {"lr": self.cfg.lr_generator, "betas": (0.0, 0.9)}),
                "critic": (list(self.critic.parameters()), {"lr": self.cfg.lr_critic, "betas": (0.0, 0.9)})}

    def fake(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Generated images in (-1, 1) (tanh of the logits), differentiable."""
        return torch.tanh(self.generator(self.generator.latent(len(c), generator), c))

    def train_step(self, batch, generator: torch.Generator, optimizers: dict[str, torch.optim.Optimizer],
                   grad_clip: float) -> dict[str, float]:
        x, c = batch
        d_opt, g_opt = optimizers["critic"], optimizers["generator"]
        for _ in range(self.cfg.n_critic):
            with torch.no_grad():
                fake = self.fake(c, generator)
            d_loss = (nn.functional.relu(1 - self.critic(x, c)).mean()
                      + nn.functional.relu(1 + self.critic(fake, c)).mean())
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            nn.utils.clip_grad_norm_(self.critic.parameters(), grad_clip)
            d_opt.step()
        g_loss = -self.critic(self.fake(c, generator), c).mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        nn.utils.clip_grad_norm_(self.generator.parameters(), grad_clip)
        g_opt.step()
        return {"loss": d_loss.item() + g_loss.item(), "critic": d_loss.item(), "generator": g_loss.item()}

    @torch.no_grad()
    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Binary images ``(B, H, W)`` (True where the logit is positive)."""
        return self.generator(self.generator.latent(len(c), generator), c)[:, 0] > 0


class MicroDiffusionConfig(Strict):
    """The conditional DDPM's UNet (``n_conditions`` comes from the dataset) and its condition dropout."""

    n_conditions: int = Field(2, ge=1, description="Process conditions the images are generated from.")
    widths: tuple[int, ...] = Field((32, 64, 128), min_length=1, max_length=5,
                                    description=f"UNet channels per level (each halves the resolution), each {WIDTH}.")
    emb_dim: int = Field(128, ge=8, le=1024, multiple_of=2, description="Time and condition embedding size (even).")
    p_uncond: float = Field(0.15, ge=0, lt=1, description="Probability that a training condition is dropped "
                            "(the unconditional model classifier-free guidance needs).")

    @field_validator("widths")
    @classmethod
    def _widths(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        bad = [w for w in widths if w < 8 or w % 8 or w > 1024]
        if bad:
            raise ValueError(f"widths must each be {WIDTH} in 8-1024 (got {bad})")
        return widths


class MicroDiffusion(nn.Module):
    def __init__(self, cfg: MicroDiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.denoiser = MicroUNet(cfg.n_conditions, tuple(cfg.widths), cfg.emb_dim)

    def loss(self, batch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        x, c = batch
        t = torch.rand(len(x), generator=generator).clamp(min=1e-3)
        abar = cosine_alpha_bar(t)[:, None, None, None]
        eps = torch.randn(x.shape, generator=generator)
        x_t = abar.sqrt() * x + (1 - abar).sqrt() * eps
        drop = torch.rand(len(x), generator=generator) < self.cfg.p_uncond
        loss = nn.functional.mse_loss(self.denoiser(x_t, t, c, drop), eps)
        return loss, {"eps_mse": loss.item()}

    @torch.no_grad()
    def sample(self, c: torch.Tensor, size: int, steps: int = 50, guidance: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Binary images ``(B, size, size)`` by deterministic DDIM over ``steps`` steps; ``guidance`` w mixes
        ε = ε(∅) + w (ε(c) − ε(∅)) (1: the conditional model alone, 0: unconditional)."""
        x = torch.randn(len(c), 1, size, size, generator=generator)
        times = torch.linspace(1.0, 0.0, steps + 1)
        for t_now, t_next in zip(times[:-1], times[1:]):
            t = torch.full((len(c),), float(t_now))
            eps = self.denoiser(x, t, c)
            if guidance != 1.0:
                plain = self.denoiser(x, t, None)
                eps = plain + guidance * (eps - plain)
            a_now, a_next = cosine_alpha_bar(t_now), cosine_alpha_bar(t_next) if t_next > 0 else torch.tensor(1.0)
            x0 = ((x - (1 - a_now).sqrt() * eps) / a_now.sqrt()).clamp(-1, 1)
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return x[:, 0] > 0
