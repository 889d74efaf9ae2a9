"""A batch of crystals as flat tensors, and conversion from/to pymatgen structures.

A batch of B crystals with N atoms in total: ``frac`` (N, 3) fractional coordinates in [0, 1), ``species``
(N,) atomic numbers (0 is the absorbing "mask" state of the species diffusion), ``lattice`` (B, 3, 3) with
lattice vectors as rows (pymatgen's convention, Å), ``num_atoms`` (B,), ``batch`` (N,) the crystal of each
atom, and optional conditions ``props`` (B, P) with ``prop_mask`` (B, P) marking which are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

MAX_Z = 100  # species vocabulary: 1..100, 0 = mask
MASK = 0


@dataclass
class CrystalBatch:
    frac: torch.Tensor
    species: torch.Tensor
    lattice: torch.Tensor
    num_atoms: torch.Tensor
    batch: torch.Tensor
    props: torch.Tensor | None = None
    prop_mask: torch.Tensor | None = None

    @property
    def num_graphs(self) -> int:
        return int(self.num_atoms.shape[0])

    def replace(self, **changes: torch.Tensor) -> CrystalBatch:
        return replace(self, **changes)

    def to(self, device: torch.device | str) -> CrystalBatch:
        return CrystalBatch(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                               for k, v in self.__dict__.items()})

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All ordered pairs (i, j), i != j, of atoms of the same crystal (fully connected, as CSPNet)."""
        return fully_connected_edges(self.num_atoms, self.batch)


def fully_connected_edges(num_atoms: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n_total = batch.shape[0]
    offsets = torch.cumsum(num_atoms, 0) - num_atoms
    counts = num_atoms[batch]  # atoms in each atom's crystal
    src = torch.repeat_interleave(torch.arange(n_total, device=batch.device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(int(counts.sum()), device=batch.device) - torch.repeat_interleave(first, counts)
    dst = torch.repeat_interleave(offsets[batch], counts) + local
    keep = src != dst
    return src[keep], dst[keep]


def batch_from_structures(structures: Sequence[Structure], props: np.ndarray | None = None,
                          prop_mask: np.ndarray | None = None, dtype: torch.dtype = torch.float32) -> CrystalBatch:
    """Stack pymatgen structures (ordered, elements only) into a batch; ``props`` (B, P) already normalised."""
    num_atoms = torch.tensor([len(s) for s in structures], dtype=torch.long)
    frac = torch.tensor(np.concatenate([np.mod(s.frac_coords, 1.0) for s in structures]), dtype=dtype)
    species = torch.tensor([site.specie.Z for s in structures for site in s], dtype=torch.long)
    lattice = torch.tensor(np.stack([s.lattice.matrix for s in structures]), dtype=dtype)
    batch = torch.repeat_interleave(torch.arange(len(structures)), num_atoms)
    p = m = None
    if props is not None:
        p = torch.tensor(np.nan_to_num(props), dtype=dtype)
        m = torch.tensor(prop_mask if prop_mask is not None else ~np.isnan(props), dtype=torch.bool)
    return CrystalBatch(frac, species, lattice, num_atoms, batch, p, m)


def structures_from_batch(b: CrystalBatch) -> list[Structure]:
    """Back to pymatgen structures (species 0, the mask state, cannot occur in a finished sample)."""
    out = []
    frac = b.frac.detach().cpu().numpy()
    species = b.species.detach().cpu().numpy()
    lattice = b.lattice.detach().cpu().double().numpy()
    start = 0
    for g, n in enumerate(b.num_atoms.tolist()):
        out.append(Structure(Lattice(lattice[g]), [int(z) for z in species[start:start + n]],
                             np.mod(frac[start:start + n], 1.0)))
        start += n
    return out


_SYM = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def symmetric_factor(lattice: torch.Tensor) -> torch.Tensor:
    """(L L^T)^(1/2): the lattice with its orientation removed (rows stay lattice vectors of the same cell)."""
    evals, evecs = torch.linalg.eigh(lattice @ lattice.transpose(-1, -2))
    return evecs @ torch.diag_embed(evals.clamp(min=0).sqrt()) @ evecs.transpose(-1, -2)


def symmetric_to_vector(s: torch.Tensor) -> torch.Tensor:
    return torch.stack([s[..., i, j] for i, j in _SYM], dim=-1)


def vector_to_symmetric(v: torch.Tensor) -> torch.Tensor:
    s = torch.zeros(*v.shape[:-1], 3, 3, dtype=v.dtype, device=v.device)
    for k, (i, j) in enumerate(_SYM):
        s[..., i, j] = v[..., k]
        s[..., j, i] = v[..., k]
    return s


@dataclass(frozen=True)
class Normalizer:
    """Dataset statistics the model is trained in: lattice length scale, property means/stds and the
    elements the training crystals contain (atomic numbers; empty: not recorded, as in older checkpoints)."""

    length_scale: float  # mean (V/N)^(1/3), Å
    prop_names: tuple[str, ...] = ()
    prop_mean: tuple[float, ...] = ()
    prop_std: tuple[float, ...] = ()
    elements: tuple[int, ...] = ()

    @classmethod
    def fit(cls, structures: Sequence[Structure], props: np.ndarray | None = None,
            prop_names: Sequence[str] = ()) -> Normalizer:
        scale = float(np.mean([(s.volume / len(s)) ** (1 / 3) for s in structures]))
        elements = tuple(sorted({el.Z for s in structures for el in s.composition}))
        if props is None or not len(prop_names):
            return cls(scale, elements=elements)
        mean = np.nanmean(props, axis=0)
        std = np.nanstd(props, axis=0)
        return cls(scale, tuple(prop_names), tuple(float(x) for x in mean),
                   tuple(float(x) if x > 0 else 1.0 for x in std), elements)

    def element_support(self) -> torch.Tensor | None:
        """(MAX_Z + 1,) bool of the training elements, or None when they were not recorded."""
        if not self.elements:
            return None
        mask = torch.zeros(MAX_Z + 1, dtype=torch.bool)
        mask[list(self.elements)] = True
        return mask

    def _scale(self, num_atoms: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.length_scale * num_atoms.to(dtype).pow(1 / 3)

    def lattice_to_model(self, lattice: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
        """(B, 6) rotation-invariant lattice: the symmetric factor S of the polar decomposition L = S U
        (S = (L L^T)^(1/2)), scaled by the expected cell size, as (S00, S11, S22, S01, S02, S12)."""
        return symmetric_to_vector(symmetric_factor(lattice) / self._scale(num_atoms, lattice.dtype)[:, None, None])

    def lattice_from_model(self, vec: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
        """Lattice matrices (B, 3, 3) from model vectors; eigenvalues are kept positive (a valid cell)."""
        s = vector_to_symmetric(vec)
        evals, evecs = torch.linalg.eigh(s)
        s = evecs @ torch.diag_embed(evals.clamp(min=0.05)) @ evecs.transpose(1, 2)
        return s * self._scale(num_atoms, vec.dtype)[:, None, None]

    def props_to_model(self, values: np.ndarray) -> np.ndarray:
        return (values - np.asarray(self.prop_mean)) / np.asarray(self.prop_std)

    def as_dict(self) -> dict:
        return {"length_scale": self.length_scale, "prop_names": list(self.prop_names),
                "prop_mean": list(self.prop_mean), "prop_std": list(self.prop_std), "elements": list(self.elements)}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls(float(d["length_scale"]), tuple(d["prop_names"]), tuple(d["prop_mean"]), tuple(d["prop_std"]),
                   tuple(int(z) for z in d.get("elements", ())))
