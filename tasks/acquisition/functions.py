"""Acquisition functions on a predicted E_hull (eV/atom, lower is better) with an uncertainty sigma.

Every function returns a value to maximise: greedy ``-mu``; lower confidence bound ``-(mu - kappa * sigma)``;
expected improvement below a target ``y*`` (the stability threshold) ``(y* - mu) Phi(z) + sigma phi(z)``,
``z = (y* - mu) / sigma``, which tends to ``max(y* - mu, 0)`` as sigma goes to 0 (ties broken by ``-mu``, so it
then ranks like greedy); random: a seeded uniform draw. :func:`select` picks greedily, subtracting
``diversity`` for every candidate of the same composition already picked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import norm

FUNCTIONS = ("greedy", "lcb", "ei", "random")


def acquisition_values(mu: np.ndarray, sigma: np.ndarray, function: str, kappa: float = 1.0,
                       target: float = 0.0, seed: int = 0) -> np.ndarray:
    """Value of each candidate under ``function`` (one of :data:`FUNCTIONS`)."""
    mu, sigma = np.asarray(mu, dtype=float), np.clip(np.asarray(sigma, dtype=float), 0.0, None)
    if function == "greedy":
        return -mu
    if function == "lcb":
        return -(mu - kappa * sigma)
    if function == "ei":
        gain = target - mu
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sigma > 0, gain / np.where(sigma > 0, sigma, 1.0), 0.0)
        ei = np.where(sigma > 0, gain * norm.cdf(z) + sigma * norm.pdf(z), np.maximum(gain, 0.0))
        return ei - 1e-9 * mu  # equal improvement (none, as sigma -> 0 above the target): lower mean first
    if function == "random":
        return np.random.default_rng(seed).random(len(mu))
    raise ValueError(f"unknown acquisition function {function!r}; allowed: {', '.join(FUNCTIONS)}")


def select(values: np.ndarray, formulas: Sequence[str], k: int, diversity: float = 0.0,
           earlier: Mapping[str, int] | None = None, repeat_penalty: float = 0.0) -> list[int]:
    """Indices of ``k`` candidates (fewer if there are fewer), best first: each pick takes the highest value after
    subtracting ``diversity`` times the number of already picked candidates with the same formula and
    ``repeat_penalty`` times the number of the campaign's ``earlier`` relaxations of that formula. Ties go to the
    lower index, so the choice is deterministic."""
    values = np.asarray(values, dtype=float)
    if earlier and repeat_penalty:
        values = values - repeat_penalty * np.array([earlier.get(f, 0) for f in formulas], dtype=float)
    chosen: list[int] = []
    taken: dict[str, int] = {}
    left = list(range(len(values)))
    for _ in range(min(k, len(values))):
        adjusted = [values[i] - diversity * taken.get(formulas[i], 0) for i in left]
        best = left[int(np.argmax(adjusted))]
        chosen.append(best)
        left.remove(best)
        taken[formulas[best]] = taken.get(formulas[best], 0) + 1
    return chosen
