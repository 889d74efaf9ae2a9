"""Conditions shared by the crystal generators: normalised property targets with "given" flags and the
chemical system as an element multi-hot, with the random dropout that makes them optional.

A model config that conditions exposes ``properties`` (names), ``condition_on_elements`` and
``cond_drop_prob``; :func:`cond_dim` gives the length of the condition vector it is built for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from models.crystal import MAX_Z, CrystalBatch


class ConditionedConfig(Protocol):
    properties: tuple[str, ...]
    condition_on_elements: bool
    cond_drop_prob: float


def cond_dim(cfg: ConditionedConfig) -> int:
    """Length of the condition vector: values and given flags per property, plus the element multi-hot."""
    return 2 * len(cfg.properties) + ((MAX_Z + 1) if cfg.condition_on_elements else 0)


def element_multi_hot(species: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """(B, MAX_Z + 1) indicator of the elements present in each crystal."""
    hot = torch.zeros(num_graphs, MAX_Z + 1, dtype=torch.float32, device=species.device)
    hot[batch, species] = 1.0
    return hot


@dataclass
class Condition:
    """Raw condition parts for a batch: property values (normalised), given flags, allowed elements."""

    props: torch.Tensor | None  # (B, P)
    given: torch.Tensor | None  # (B, P) bool
    elements: torch.Tensor | None  # (B, MAX_Z + 1) multi-hot, or None when not conditioned

    def vector(self, cfg: ConditionedConfig, num_graphs: int, device: torch.device) -> torch.Tensor | None:
        parts = []
        if cfg.properties:
            p = (self.props if self.props is not None
                 else torch.zeros(num_graphs, len(cfg.properties), device=device, dtype=torch.float32))
            g = self.given if self.given is not None else torch.zeros_like(p, dtype=torch.bool)
            parts += [p * g, g.float()]
        if cfg.condition_on_elements:
            parts.append(self.elements if self.elements is not None
                         else torch.zeros(num_graphs, MAX_Z + 1, device=device, dtype=torch.float32))
        return torch.cat(parts, dim=-1) if parts else None


def condition_of(cfg: ConditionedConfig, b: CrystalBatch, generator: torch.Generator | None) -> Condition:
    """The batch's own conditions, each dropped with probability ``cfg.cond_drop_prob`` (so the model also
    learns the unconditional distribution: classifier-free guidance, unconditional GAN sampling)."""
    n, dev, p = b.num_graphs, b.frac.device, cfg.cond_drop_prob
    props = given = elements = None
    if cfg.properties:
        props = (b.props if b.props is not None
                 else torch.zeros(n, len(cfg.properties), device=dev, dtype=torch.float32))
        given = b.prop_mask if b.prop_mask is not None else torch.zeros_like(props, dtype=torch.bool)
        given = given & (torch.rand(given.shape, generator=generator, device=dev) >= p)
    if cfg.condition_on_elements:
        keep = (torch.rand(n, 1, generator=generator, device=dev) >= p).float()
        elements = element_multi_hot(b.species, b.batch, n) * keep
    return Condition(props, given, elements)
