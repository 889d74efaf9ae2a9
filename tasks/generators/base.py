"""The Generator interface every structure generator satisfies, and the shared arm-weight state.

A generator proposes structures for a round's :class:`~tasks.results.Conditions` and learns from the
previous round's :class:`~tasks.results.RoundFeedback`. It holds no open handles: the campaign rebuilds it
in every generate task from its config, the seed set and the last feedback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from tasks.candidate import Candidate
from tasks.results import Conditions, RoundFeedback


@runtime_checkable
class Generator(Protocol):
    """Proposes candidate structures.

    ``sample`` returns at most ``n`` candidates (fewer when the generator's space is exhausted), each with
    provenance; the same ``(n, conditions, seed)`` after the same ``update`` calls gives the same output.
    """

    name: str
    arms: ArmWeights

    def identity(self) -> str:
        """Name, settings and data hash: recorded with every candidate."""
        ...

    def sample(self, n: int, conditions: Conditions, seed: int) -> list[Candidate]:
        """Draw up to ``n`` candidates for ``conditions`` with a seeded RNG."""
        ...

    def update(self, feedback: RoundFeedback) -> None:
        """Learn from the previous round (re-weight arms, skip proposals already made, fine-tune)."""
        ...

    def notes(self) -> dict:
        """What the last ``sample`` did beyond its settings (a widened pool, an exhausted space), for the round
        summary; empty when nothing."""
        ...


class ArmWeights:
    """Sampling weights per arm (template or composition) plus the set of proposals already made.

    Arms never seen in feedback take the feedback's prior weight (the campaign's mean score; 1.0 before any
    feedback): arms that did better than the campaign are sampled more than untried ones, worse ones less.
    ``guide`` (a :class:`~tasks.properties.guide.PropertyGuide`, set by the generate step) multiplies each
    proposal's weight by a weight of its formula: predictor guidance towards a property target.
    """

    def __init__(self) -> None:
        self.weights: dict[str, float] = {}
        self.prior = 1.0
        self.proposed: set[str] = set()
        self.guide: Callable[[Sequence[str]], np.ndarray] | None = None

    def update(self, feedback: RoundFeedback) -> None:
        self.weights = dict(feedback.arm_weights)
        self.prior = feedback.prior_weight
        self.proposed = set(feedback.proposed_keys)

    def weight(self, arm: str) -> float:
        return self.weights.get(arm, self.prior)

    def scores(self, arms: Sequence[str], formulas: Sequence[str]) -> np.ndarray:
        """Sampling weight of each proposal: its arm's weight times the guide's weight of its reduced formula."""
        scores = np.array([self.weight(a) for a in arms], dtype=float)
        return scores * self.guide(list(formulas)) if self.guide is not None and len(scores) else scores

    def choose(self, rng: np.random.Generator, scores: np.ndarray, k: int) -> np.ndarray:
        """Indices of ``k`` items drawn without replacement with probability proportional to ``scores``."""
        scores = np.clip(np.asarray(scores, dtype=float), 0.0, None)
        k = min(k, int(np.count_nonzero(scores)))
        if k == 0:
            return np.array([], dtype=int)
        return rng.choice(len(scores), size=k, replace=False, p=scores / scores.sum())


def data_digest(*parts: object) -> str:
    """Short hash of generator settings and data identifiers."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]
