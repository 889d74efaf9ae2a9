"""Training data for crystal generators: structures + properties, batched as :class:`CrystalBatch`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from pymatgen.core import Structure

from models.crystal import CrystalBatch, Normalizer, batch_from_structures


class CrystalDataset:
    """Ordered structures with an optional (n, P) property matrix (NaN = unknown; None = all unknown),
    normalised on access."""

    def __init__(self, structures: Sequence[Structure], normalizer: Normalizer,
                 props: np.ndarray | None = None) -> None:
        if not structures:
            raise ValueError("a training set needs at least one structure")
        self.structures = list(structures)
        self.normalizer = normalizer
        names = normalizer.prop_names
        if names and props is None:  # no labels at all: every property unknown (masked, the model learns it
            props = np.full((len(structures), len(names)), np.nan)  # unconditionally)
        if names and props.shape != (len(structures), len(names)):
            raise ValueError(f"expected a ({len(structures)}, {len(names)}) property matrix for {list(names)}")
        self.props = None if not names else normalizer.props_to_model(np.asarray(props, dtype=float))

    def __len__(self) -> int:
        return len(self.structures)

    def batch(self, indices: Sequence[int]) -> CrystalBatch:
        props = None if self.props is None else self.props[list(indices)]
        return batch_from_structures([self.structures[i] for i in indices], props)

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[CrystalBatch]:
        order = torch.randperm(len(self), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start:start + batch_size])

    def num_atoms_histogram(self, max_atoms: int = 200) -> list[float]:
        counts = np.bincount([len(s) for s in self.structures], minlength=max_atoms + 1)[: max_atoms + 1]
        return (counts / counts.sum()).tolist()

    def digest(self) -> str:
        h = hashlib.sha256()
        for s in self.structures:
            h.update(s.composition.formula.encode())
            h.update(np.round(s.lattice.abc, 4).tobytes())
        return h.hexdigest()[:16]
