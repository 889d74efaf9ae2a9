"""The two networks of the crystal GAN: a set-transformer generator and a periodic, invariant critic.

Generator ``G(z, c, n)``: a crystal latent, one latent per atom and the condition go through a transformer
over the atoms of each crystal; heads give fractional coordinates (an angle per axis, so the output lives on
the torus with no boundary), species logits and the lattice as the 6 numbers of its symmetric polar factor
(the same rotation-free representation the diffusion model uses).

Critic ``D(x, c)``: CSPNet message passing (:mod:`models.cspnet`) on the species one-hot, Fourier features
of fractional-coordinate differences and the lattice factor — invariant to permuting atoms, rotating the
cell and translating all atoms — mean-pooled per crystal, plus the batch's feature spread (minibatch
standard deviation, against mode collapse). Every linear map is spectrally normalised. The
condition enters by projection (Miyato & Koyama 2018: ``score = psi(phi) + <W c, phi>``) and an auxiliary
head regresses the properties (AC-GAN style) so continuous targets steer the generator.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from models.crystal import MAX_Z, vector_to_symmetric
from models.cspnet import CSPLayer, scatter_mean


def to_padded(h: torch.Tensor, num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat per-atom rows (atoms grouped by crystal, in order) -> (B, n_max, D) and a (B, n_max) validity mask."""
    n_max = int(num_atoms.max())
    mask = torch.arange(n_max, device=h.device)[None, :] < num_atoms[:, None]
    padded = h.new_zeros(num_atoms.shape[0], n_max, h.shape[-1])
    padded[mask] = h
    return padded, mask


_IMAGES = torch.tensor([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=torch.float32)


def pair_distances(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, src: torch.Tensor,
                   dst: torch.Tensor) -> torch.Tensor:
    """(E,) distance of each pair to its nearest periodic image, in the units of ``lattice`` (6-vector of the
    symmetric cell factor): the closest of the 27 images around the difference wrapped into [-1/2, 1/2) per
    axis (rounding per axis alone misses the nearest image in sheared cells, and jumps as atoms move)."""
    d = frac[dst] - frac[src]
    d = d - torch.round(d)
    images = d[:, None, :] + _IMAGES.to(device=d.device, dtype=d.dtype)
    cart = torch.einsum("eki,eij->ekj", images, vector_to_symmetric(lattice)[batch[src]])
    return cart.norm(dim=-1).min(dim=1).values


def pair_gaussians(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, src: torch.Tensor,
                   dst: torch.Tensor, centers: torch.Tensor, width: float | torch.Tensor) -> torch.Tensor:
    """(E, K) Gaussians ``exp(-((d - c) / width)^2)`` at ``centers`` of each pair's nearest-image distance d,
    measured in the training data's mean atomic spacing (``Normalizer.length_scale``, a fixed number of Å;
    model-space lattices are divided by ``length_scale * N^(1/3)``, so this multiplies back by N^(1/3)): a
    bond lands on the same Gaussians whatever the atom count."""
    per_crystal = torch.bincount(batch, minlength=lattice.shape[0]).to(frac.dtype).pow(1 / 3)
    d = pair_distances(frac, lattice, batch, src, dst) * per_crystal[batch[src]]
    return torch.exp(-(((d[:, None] - centers) / width) ** 2))


def radial_profile(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, src: torch.Tensor,
                   dst: torch.Tensor, num_atoms: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """(B, K) smoothed histogram of each crystal's nearest-image pair distances: :func:`pair_gaussians` (width
    the spacing of ``centers``) summed over its pairs, per atom. Differentiable in the coordinates and the
    lattice. Each atom has N - 1 pairs, so in batches of mixed atom counts larger crystals weigh more in the
    batch moments. Nearest images only: with every image the far bins, which the lattice alone can fill,
    outweigh the bonds, and a generator stacking all atoms on one point matched them."""
    width = (centers[1] - centers[0]) if centers.numel() > 1 else centers.new_tensor(1.0)
    rbf = pair_gaussians(frac, lattice, batch, src, dst, centers, width)
    profile = torch.zeros(num_atoms.shape[0], centers.shape[0], device=frac.device, dtype=frac.dtype)
    return profile.index_add(0, batch[src], rbf) / num_atoms.to(frac.dtype)[:, None]


def minibatch_spread(x: torch.Tensor) -> torch.Tensor:
    """(B, 1): the batch's mean feature standard deviation, the same for every crystal of the batch (ProGAN's
    minibatch standard deviation): a batch of near-copies looks unlike a batch of real crystals, so the
    critic can punish mode collapse that no single crystal shows."""
    # sqrt(var + eps): a column constant over the batch (the zero shears of cubic cells) has an infinite std
    # gradient, which the R1 penalty's gradient of the score by the lattice would turn into NaN
    spread = (x.var(0) + 1e-8).sqrt().mean() if x.shape[0] > 1 else x.new_zeros(())
    return spread.expand(x.shape[0], 1)


def spectrally_normalised(module: nn.Module) -> nn.Module:
    """Put a spectral-norm parametrization on every Linear layer inside ``module``."""
    for child in list(module.modules()):
        if isinstance(child, nn.Linear):
            spectral_norm(child)
    return module


class CrystalGenerator(nn.Module):
    """``(z_crystal, z_atoms, num_atoms, condition) -> (lattice (B, 6), frac (N, 3), species logits (N, Z))``."""

    def __init__(self, latent_dim: int, hidden_dim: int, num_layers: int, heads: int, cond_dim: int,
                 max_atoms: int) -> None:
        super().__init__()
        self.max_atoms = max_atoms
        self.count_embedding = nn.Embedding(max_atoms + 1, hidden_dim)
        # a slot per atom position (as DETR's object queries): without it the per-atom noise alone must keep
        # the atoms apart, and an untrained generator stacks them on one point
        self.slot_embedding = nn.Embedding(max_atoms, hidden_dim)
        self.crystal_in = nn.Sequential(nn.Linear(latent_dim + cond_dim, hidden_dim), nn.SiLU(),
                                        nn.Linear(hidden_dim, hidden_dim))
        self.atom_in = nn.Sequential(nn.Linear(latent_dim + hidden_dim, hidden_dim), nn.SiLU(),
                                     nn.Linear(hidden_dim, hidden_dim))
        layer = nn.TransformerEncoderLayer(hidden_dim, heads, 2 * hidden_dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.frac_out = nn.Linear(hidden_dim, 6)
        self.species_out = nn.Linear(hidden_dim, MAX_Z + 1)
        self.lattice_out = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, 6))
        # cells within one unit of the unit cube in the model's lattice units (the expected cell size): the
        # critic's gradient cannot drive the generator to degenerate or exploding cells
        self.register_buffer("lattice_offset", torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]))

    def forward(self, z_crystal: torch.Tensor, z_atoms: torch.Tensor, num_atoms: torch.Tensor,
                batch: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        crystal_in = z_crystal if cond is None else torch.cat([z_crystal, cond], dim=-1)
        g = self.crystal_in(crystal_in) + self.count_embedding(num_atoms.clamp(max=self.max_atoms))
        first = torch.cumsum(num_atoms, 0) - num_atoms
        slot = (torch.arange(batch.shape[0], device=batch.device) - first[batch]).clamp(max=self.max_atoms - 1)
        h = self.atom_in(torch.cat([z_atoms, g[batch]], dim=-1)) + self.slot_embedding(slot)
        padded, mask = to_padded(h, num_atoms)
        h = self.out_norm(self.encoder(padded, src_key_padding_mask=~mask)[mask])
        xy = self.frac_out(h).view(-1, 3, 2)
        frac = torch.remainder(torch.atan2(xy[..., 1], xy[..., 0]) / (2 * math.pi), 1.0)
        pooled = scatter_mean(h, batch, num_atoms.shape[0])
        lattice = torch.tanh(self.lattice_out(torch.cat([pooled, g], dim=-1))) + self.lattice_offset
        return lattice, frac, self.species_out(h)


class DistanceMessages(nn.Module):
    """One message-passing step on Gaussian expansions of interatomic distances (:func:`pair_gaussians`:
    nearest image, in the data's mean atomic spacing): a feature that changes smoothly as atoms move, so the
    critic's score has a slope towards real bond lengths from far away, where Fourier features of
    coordinate differences oscillate."""

    def __init__(self, hidden_dim: int, num_rbf: int, max_distance: float = 2.0) -> None:
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, max_distance, num_rbf))
        self.width = max_distance / max(num_rbf - 1, 1)
        self.message = nn.Sequential(nn.Linear(2 * hidden_dim + num_rbf, hidden_dim), nn.SiLU(),
                                     nn.Linear(hidden_dim, hidden_dim))

    def forward(self, h: torch.Tensor, frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor,
                src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        rbf = pair_gaussians(frac, lattice, batch, src, dst, self.centers, self.width)
        return h + scatter_mean(self.message(torch.cat([h[src], h[dst], rbf], dim=-1)), dst, h.shape[0])


class CrystalCritic(nn.Module):
    """``(species one-hot (N, Z), frac, lattice (B, 6), condition) -> (score (B,), property estimate (B, P),
    features (B, H))``."""

    def __init__(self, hidden_dim: int, num_layers: int, num_freqs: int, cond_dim: int, num_props: int,
                 batch_spread: bool = True, distance_rbf: int = 0) -> None:
        super().__init__()
        self.batch_spread = batch_spread
        self.species_in = nn.Linear(MAX_Z + 1, hidden_dim, bias=False)
        self.distances = DistanceMessages(hidden_dim, distance_rbf) if distance_rbf else None
        self.layers = nn.ModuleList(CSPLayer(hidden_dim, num_freqs) for _ in range(num_layers))
        for layer in self.layers:  # LayerNorm's gain would undo the Lipschitz bound of spectral normalisation
            layer.norm = nn.Identity()
        self.features = nn.Sequential(nn.Linear(hidden_dim + 7, hidden_dim), nn.SiLU(),
                                      nn.Linear(hidden_dim, hidden_dim), nn.SiLU())
        self.score = nn.Linear(hidden_dim, 1)
        self.project = nn.Linear(cond_dim, hidden_dim, bias=False) if cond_dim else None
        self.aux = nn.Linear(hidden_dim, num_props) if num_props else None
        spectrally_normalised(self)

    def forward(self, species: torch.Tensor, frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor,
                edges: tuple[torch.Tensor, torch.Tensor], cond: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        src, dst = edges
        # the symmetric factor S (lattice, 6 numbers) is already rotation invariant; its metric S S = L L^T
        # would be quadratic in the generator's output, which spectral normalisation does not bound
        h = self.species_in(species)
        if self.distances is not None:
            h = self.distances(h, frac, lattice, batch, src, dst)
        for layer in self.layers:
            h = layer(h, frac, lattice, batch, src, dst)
        pooled = scatter_mean(h, batch, lattice.shape[0])
        crystal = torch.cat([pooled, lattice], dim=-1)
        spread = minibatch_spread(crystal) if self.batch_spread else crystal.new_zeros(crystal.shape[0], 1)
        phi = self.features(torch.cat([crystal, spread], dim=-1))
        score = self.score(phi).squeeze(-1)
        if self.project is not None and cond is not None:
            score = score + (self.project(cond) * phi).sum(-1)
        return score, (self.aux(phi) if self.aux is not None else None), phi
