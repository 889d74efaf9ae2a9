"""Convolutional networks for periodic two-phase images, conditioned on process parameters.

Every convolution pads circularly, so a network sees the image as a torus (periodic microstructures have no edge)
and a generator fed a periodic latent produces a periodic image. Conditions are a vector of normalised process
parameters embedded by an MLP (not class labels): they enter the generator by FiLM, the critic by projection
(Miyato & Koyama 2018), the denoiser by FiLM together with the time embedding (a learned null embedding stands for
"no condition", for classifier-free guidance).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def circular_conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, padding_mode="circular")


def levels(size: int, base: int) -> int:
    n = int(round(math.log2(size / base)))
    if base * 2 ** n != size or n < 1:
        raise ValueError(f"image size {size} must be base ({base}) times a power of two")
    return n


class ConditionEmbedding(nn.Module):
    def __init__(self, n_conditions: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_conditions, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.net(c)


class FiLMBlock(nn.Module):
    """conv -> norm -> scale/shift from an embedding -> activation."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int = 8) -> None:
        super().__init__()
        self.conv = circular_conv(c_in, c_out)
        self.norm = nn.GroupNorm(min(groups, c_out), c_out)
        self.film = nn.Linear(emb_dim, 2 * c_out)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        return nn.functional.silu(self.norm(self.conv(x)) * (1 + scale) + shift)


class MicroGenerator(nn.Module):
    """x = G(z, c): a spatial latent (``z_channels`` x base x base) upsampled to ``size`` x ``size`` logits."""

    def __init__(self, n_conditions: int, size: int = 64, base: int = 4, z_channels: int = 16, width: int = 64,
                 emb_dim: int = 64) -> None:
        super().__init__()
        self.size, self.base, self.z_channels = size, base, z_channels
        self.embed = ConditionEmbedding(n_conditions, emb_dim)
        n = levels(size, base)
        widths = [max(width // 2 ** max(i - 1, 0), 16) for i in range(n + 1)]
        self.stem = FiLMBlock(z_channels, widths[0], emb_dim)
        self.blocks = nn.ModuleList(FiLMBlock(widths[i], widths[i + 1], emb_dim) for i in range(n))
        self.out = circular_conv(widths[-1], 1)

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.z_channels, self.base, self.base, generator=generator)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c)
        h = self.stem(z, emb)
        for block in self.blocks:
            h = block(nn.functional.interpolate(h, scale_factor=2, mode="nearest"), emb)
        return self.out(h)  # logits of the phase


class MicroCritic(nn.Module):
    """D(x, c): strided spectrally normalised circular convolutions, projection conditioning."""

    def __init__(self, n_conditions: int, size: int = 64, width: int = 32, max_width: int = 256) -> None:
        super().__init__()
        n = levels(size, 4)
        layers, c_in = [], 1
        for i in range(n):
            c_out = min(width * 2 ** i, max_width)
            layers += [spectral_norm(circular_conv(c_in, c_out, 3, stride=2)), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.linear = spectral_norm(nn.Linear(c_in, 1))
        self.embed = spectral_norm(nn.Linear(n_conditions, c_in))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.features(x).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(c) * h).sum(dim=1)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of continuous times ``t`` in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = 1000.0 * t[:, None].float() * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.a = FiLMBlock(c_in, c_out, emb_dim)
        self.b = FiLMBlock(c_out, c_out, emb_dim)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.b(self.a(x, emb), emb)


class MicroUNet(nn.Module):
    """ε(x_t, t, c): a small circular UNet; ``c=None`` (or rows flagged in ``drop``) use the null condition."""

    def __init__(self, n_conditions: int, widths: tuple[int, ...] = (32, 64, 128), emb_dim: int = 128) -> None:
        super().__init__()
        self.emb_dim = emb_dim
        self.time = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.cond = ConditionEmbedding(n_conditions, emb_dim)
        self.null = nn.Parameter(torch.zeros(emb_dim))
        self.stem = circular_conv(1, widths[0])
        self.down = nn.ModuleList(ResBlock(a, b, emb_dim) for a, b in zip(widths[:1] + widths[:-1], widths))
        self.pool = nn.ModuleList(circular_conv(w, w, 3, stride=2) for w in widths[:-1])
        self.mid = ResBlock(widths[-1], widths[-1], emb_dim)
        self.up = nn.ModuleList(ResBlock(2 * w, w_out, emb_dim) for w, w_out in
                                zip(reversed(widths), list(reversed(widths))[1:] + [widths[0]]))
        self.out = circular_conv(widths[0], 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.emb_dim))
        cond = self.null.expand(len(x), -1) if c is None else self.cond(c)
        if c is not None and drop is not None:
            cond = torch.where(drop[:, None], self.null.expand_as(cond), cond)
        emb = emb + cond
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            skip = skips.pop()
            if h.shape[-1] != skip.shape[-1]:
                h = nn.functional.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(h)
