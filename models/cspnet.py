"""CSPNet-style periodic message passing (after DiffCSP, Jiao et al. 2023), the denoiser of the diffusion.

Messages between every pair of atoms of a crystal see both atoms' features, the lattice Gram matrix
(rotation invariant) and Fourier features of the fractional-coordinate difference (invariant to periodic
translations). The lattice enters as the 6 entries of its symmetric polar factor S = (L L^T)^(1/2), itself
rotation invariant. Outputs: a fractional-coordinate score per atom and species logits per atom
(equivariant to permutations, invariant to rotations and translations), and a noise prediction for S.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.crystal import MAX_Z, vector_to_symmetric

_TRIU = torch.triu_indices(3, 3)


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out), nn.SiLU())


def scatter_mean(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    out = torch.zeros(size, values.shape[-1], dtype=values.dtype, device=values.device)
    out.index_add_(0, index, values)
    count = torch.zeros(size, dtype=values.dtype, device=values.device).index_add_(
        0, index, torch.ones_like(index, dtype=values.dtype))
    return out / count.clamp(min=1)[:, None]


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar in [0, 1] (diffusion time)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
        args = 1000.0 * t[:, None] * freqs[None]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class CSPLayer(nn.Module):
    def __init__(self, hidden_dim: int, num_freqs: int) -> None:
        super().__init__()
        self.num_freqs = num_freqs
        self.edge_mlp = _mlp(2 * hidden_dim + 6 + 6 * num_freqs, hidden_dim, hidden_dim)
        self.node_mlp = _mlp(2 * hidden_dim, hidden_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)

    def fourier(self, d: torch.Tensor) -> torch.Tensor:
        k = torch.arange(1, self.num_freqs + 1, dtype=d.dtype, device=d.device)
        x = 2 * math.pi * d[..., None] * k  # (E, 3, K)
        return torch.cat([torch.sin(x), torch.cos(x)], dim=-1).flatten(1)

    def forward(self, h: torch.Tensor, frac: torch.Tensor, gram: torch.Tensor, batch: torch.Tensor,
                src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        hn = self.norm(h)
        edge = torch.cat([hn[src], hn[dst], gram[batch[src]], self.fourier(frac[dst] - frac[src])], dim=-1)
        agg = scatter_mean(self.edge_mlp(edge), src, h.shape[0])
        return h + self.node_mlp(torch.cat([hn, agg], dim=-1))


class CSPNet(nn.Module):
    """The denoiser: ``(species, frac, lattice, t, condition) -> (eps_lattice, frac_score, species_logits)``.

    Parameters
    ----------
    hidden_dim, num_layers
        Width and depth (e.g. 64/3 for CPU tests, 256/6 on a GPU).
    num_freqs
        Fourier frequencies per fractional coordinate difference.
    cond_dim
        Length of the condition vector (0: unconditional).
    """

    def __init__(self, hidden_dim: int = 128, num_layers: int = 4, num_freqs: int = 8, cond_dim: int = 0) -> None:
        super().__init__()
        self.species_embedding = nn.Embedding(MAX_Z + 1, hidden_dim)
        self.time_embedding = nn.Sequential(SinusoidalEmbedding(hidden_dim), nn.Linear(hidden_dim, hidden_dim),
                                            nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
        self.cond_embedding = (nn.Sequential(nn.Linear(cond_dim, hidden_dim), nn.SiLU(),
                                             nn.Linear(hidden_dim, hidden_dim)) if cond_dim else None)
        self.layers = nn.ModuleList(CSPLayer(hidden_dim, num_freqs) for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.frac_out = nn.Linear(hidden_dim, 3, bias=False)
        self.species_out = nn.Linear(hidden_dim, MAX_Z + 1)
        self.lattice_out = nn.Sequential(nn.Linear(hidden_dim + 6, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, 6))

    def forward(self, species: torch.Tensor, frac: torch.Tensor, lattice: torch.Tensor, t: torch.Tensor,  # (B, 6)
                batch: torch.Tensor, edges: tuple[torch.Tensor, torch.Tensor],
                cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src, dst = edges
        graph = self.time_embedding(t)
        if self.cond_embedding is not None and cond is not None:
            graph = graph + self.cond_embedding(cond)
        h = self.species_embedding(species) + graph[batch]
        s = vector_to_symmetric(lattice)
        gram = (s @ s)[:, _TRIU[0], _TRIU[1]]
        for layer in self.layers:
            h = layer(h, frac, gram, batch, src, dst)
        h = self.out_norm(h)
        pooled = scatter_mean(h, batch, lattice.shape[0])
        eps_lattice = self.lattice_out(torch.cat([pooled, lattice], dim=-1))
        return eps_lattice, self.frac_out(h), self.species_out(h)
