"""Which process conditions a microstructure campaign asks its generator for next (pure functions).

Conditions live in a box (:class:`Space`, one interval per condition column) and are compared in its unit cube.
The first ``initial`` conditions are a scrambled Sobol design; after that a Gaussian process (Matern 5/2 plus a
white-noise term: a condition's property is the mean of a few generated images, itself noisy) is fitted to every
evaluated condition, and the acquisition ``band`` picks, from a Sobol pool, the conditions most probable to land in
the target band, P(low <= y <= high) under the GP's predictive normal, each at least ``min_distance`` from the
others of its round and from conditions already asked for. ``random`` draws uniform conditions (the control).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.micro.dataset import MicroDataError

FUNCTIONS = ("band", "random")


@dataclass(frozen=True)
class Space:
    columns: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, bounds: dict[str, tuple[float, float]]) -> Space:
        cols = tuple(bounds)
        return cls(cols, np.array([bounds[c][0] for c in cols], float), np.array([bounds[c][1] for c in cols], float))

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, float) - self.low) / np.where(self.high > self.low, self.high - self.low, 1.0)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        return self.low + np.asarray(u, float) * (self.high - self.low)

    def as_dicts(self, x: np.ndarray) -> list[dict[str, float]]:
        return [{c: float(v) for c, v in zip(self.columns, row)} for row in np.atleast_2d(x)]

    def as_array(self, conditions: list[dict[str, float]]) -> np.ndarray:
        return np.array([[float(c[k]) for k in self.columns] for c in conditions], float).reshape(-1, len(self.columns))


def campaign_space(training: dict[str, tuple[float, float]], asked: dict[str, tuple[float, float]] | None) -> Space:
    """The campaign's box: the generator's training range, or the asked bounds when they lie inside it."""
    if asked is None:
        return Space.of(training)
    if set(asked) != set(training):
        raise MicroDataError(f"space must bound exactly the generator's conditions {', '.join(training)} "
                             f"(got {', '.join(asked)})")
    for col, (lo, hi) in asked.items():
        t_lo, t_hi = training[col]
        if not t_lo <= lo < hi <= t_hi:
            raise MicroDataError(f"space.{col} = [{lo}, {hi}] must be an interval inside the generator's training "
                                 f"range [{t_lo}, {t_hi}] (it has not learned outside it)")
    return Space.of({c: asked[c] for c in training})


def sobol(n: int, dim: int, seed: int) -> np.ndarray:
    from scipy.stats import qmc

    m = int(np.ceil(np.log2(max(n, 2))))
    return qmc.Sobol(d=dim, scramble=True, seed=seed).random_base2(m)[:n]


def band_probability(mean: np.ndarray, sigma: np.ndarray, low: float, high: float) -> np.ndarray:
    """P(low <= y <= high) for y ~ N(mean, sigma²) (sigma 0: 1 inside the band, 0 outside)."""
    from scipy.stats import norm

    s = np.maximum(np.asarray(sigma, float), 1e-12)
    return norm.cdf((high - mean) / s) - norm.cdf((low - mean) / s)


def fit_surrogate(x_unit: np.ndarray, y: np.ndarray, seed: int):
    """A Gaussian process on conditions in the unit box; targets standardised inside."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=[0.3] * x_unit.shape[1],
                                                         length_scale_bounds=(0.02, 10.0), nu=2.5)
              + WhiteKernel(1e-2, (1e-6, 1.0)))
    gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=seed)
    return gp.fit(x_unit, y)


@dataclass(frozen=True)
class Choice:
    """A condition chosen for the next round (unit-box coordinates) and why."""

    unit: np.ndarray
    source: str  # initial | band | random
    predicted: float | None = None
    sigma: float | None = None
    value: float | None = None


def choose(k: int, function: str, evaluated_unit: np.ndarray, evaluated_y: np.ndarray, asked_unit: np.ndarray,
           low: float, high: float, initial: int, min_distance: float, pool: int, seed: int) -> list[Choice]:
    """``k`` conditions for the next round.

    ``evaluated_unit``/``evaluated_y``: conditions with a property value so far; ``asked_unit``: every condition
    asked for before (evaluated or not), kept at ``min_distance`` from the GP's picks (when the box is too crowded
    for that, the most probable points not yet picked). ``random``: uniform draws. ``band``: the Sobol design while
    fewer than ``initial`` conditions were asked for (or fewer than 2 have a value), then the GP's most probable
    in-band points.
    """
    if function not in FUNCTIONS:
        raise MicroDataError(f"unknown acquisition function {function!r}; allowed: {', '.join(FUNCTIONS)}")
    dim = asked_unit.shape[1]
    rng = np.random.default_rng(seed)
    if function == "random":
        return [Choice(u, "random") for u in rng.random((k, dim))]
    if len(asked_unit) < initial or len(evaluated_y) < 2:
        design = sobol(max(initial, k) + len(asked_unit), dim, seed)[len(asked_unit):len(asked_unit) + k]
        return [Choice(u, "initial") for u in design]
    gp = fit_surrogate(evaluated_unit, evaluated_y, seed)
    candidates = sobol(pool, dim, seed + 1)
    mean, sigma = gp.predict(candidates, return_std=True)
    value = band_probability(mean, sigma, low, high)
    chosen: list[Choice] = []
    taken = list(asked_unit)
    for i in np.argsort(-value, kind="stable"):
        if len(chosen) == k:
            break
        if taken and np.min(np.linalg.norm(np.array(taken) - candidates[i], axis=1)) < min_distance:
            continue
        chosen.append(Choice(candidates[i], "band", float(mean[i]), float(sigma[i]), float(value[i])))
        taken.append(candidates[i])
    picked = {tuple(c.unit) for c in chosen}
    for i in np.argsort(-value, kind="stable"):  # the box is crowded: the best not yet picked, near or not
        if len(chosen) == k:
            break
        if tuple(candidates[i]) not in picked:
            chosen.append(Choice(candidates[i], "band", float(mean[i]), float(sigma[i]), float(value[i])))
            picked.add(tuple(candidates[i]))
    return chosen
