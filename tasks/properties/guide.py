"""Predictor guidance: generation steered towards a target an MLIP cannot give (a band-gap window).

A generator that cannot condition on the target property (the shipped diffusion and GAN checkpoints, ion
substitution, random search) still proposes more than it keeps: it oversamples, or draws from a pool, with a weight
per arm. The guide multiplies each proposal's weight by ``P(meets the targets | composition) ** scale``, the
property predictor's probability (:func:`~tasks.properties.targets.target_probability`, with the campaign's
correction retrained on its DFT/lab values): classifier guidance by importance resampling. ``scale`` 0 is
unguided, 1 samples in proportion to the probability, larger values concentrate on the likeliest compositions.
A floor keeps every proposal possible, so guidance reorders what is kept and never starves a round. The targets
are the round's conditions, so the learning loop's condition update (a band-gap range narrowed towards the
campaign's hits) moves the guide too.
Pure: no Prefect, no store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from conf.schema import TargetRange
from tasks.properties.targets import Correction, target_probability

if TYPE_CHECKING:
    from tasks.properties.predictor import PropertyPredictor

FLOOR = 1e-3  # smallest probability a proposal is weighted with


class PropertyGuide:
    """Weights ``P ** scale`` per formula for the predictor's target in ``targets``; remembers what it was asked."""

    def __init__(self, predictor: PropertyPredictor, targets: dict[str, TargetRange], scale: float,
                 correction: Correction | None = None) -> None:
        if scale < 0:
            raise ValueError(f"guidance scale must be >= 0, got {scale}")
        self.predictor, self.targets, self.scale = predictor, dict(targets), scale
        self.correction = correction or Correction()
        self._cache: dict[str, float] = {}
        self.asked: list[float] = []  # probability of every proposal weighed (the pool the generator chose from)

    def probability(self, formulas: Sequence[str]) -> np.ndarray:
        """P(meets the targets) per reduced formula (predicted once per formula)."""
        new = sorted({f for f in formulas if f not in self._cache})
        if new:
            p = target_probability(self.predictor, new, self.targets, self.correction)
            self._cache.update(zip(new, p.tolist()))
        return np.array([self._cache[f] for f in formulas], dtype=float)

    def __call__(self, formulas: Sequence[str]) -> np.ndarray:
        p = self.probability(formulas)
        self.asked.extend(p.tolist())
        return np.clip(p, FLOOR, 1.0) ** self.scale

    def report(self, chosen: Sequence[str]) -> dict[str, Any]:
        """What guidance did, for the round summary: mean probability over the pool weighed and over ``chosen``."""
        target = self.targets[self.predictor.property]
        return {"property": self.predictor.property, "scale": self.scale,
                "target": target.model_dump(exclude_none=True), "corrected_on": self.correction.n,
                "p_pool": float(np.mean(self.asked)) if self.asked else None,
                "p_chosen": float(np.mean(self.probability(chosen))) if chosen else None,
                "predictor": self.predictor.hash}


def property_guide(predictor: PropertyPredictor | None, targets: dict[str, TargetRange], scale: float,
                   correction: Correction | None = None) -> PropertyGuide | None:
    """A guide when there is something to guide towards: a predictor, a target on its property, a scale above 0."""
    if predictor is None or scale == 0 or predictor.property not in targets:
        return None
    return PropertyGuide(predictor, targets, scale, correction)
