"""An ensemble surrogate of the formation energy per atom, trained on a campaign's own relaxations.

Features: matminer's Magpie element-property statistics of the composition plus the cell's volume per atom,
density and number of sites. Model: scikit-learn's random forest; the prediction is the mean over trees and the
uncertainty their standard deviation. Cheap (milliseconds per candidate), so a round can rank many more
candidates than it relaxes; it improves as the campaign relaxes more.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from pymatgen.core import Composition, Structure

from tasks.errors import EvaluationError


@lru_cache(maxsize=1)
def _magpie():
    from matminer.featurizers.composition import ElementProperty

    return ElementProperty.from_preset("magpie", impute_nan=True)


@lru_cache(maxsize=4096)
def composition_features(formula: str) -> tuple[float, ...]:
    """Magpie element-property statistics (matminer, 132 numbers, NaN imputed) of a composition."""
    return tuple(float(x) for x in _magpie().featurize(Composition(formula)))


def features(structures: Sequence[Structure]) -> np.ndarray:
    """One row per structure: Magpie composition statistics, volume per atom (Å³), density (g/cm³), sites."""
    rows = [(*composition_features(s.composition.reduced_formula), s.volume / len(s), float(s.density),
             float(len(s))) for s in structures]
    return np.nan_to_num(np.asarray(rows, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)


class EnsembleSurrogate:
    """Random-forest regression of formation energy per atom (eV/atom) with the trees' spread as sigma."""

    def __init__(self, trees: int = 32, seed: int = 0) -> None:
        self.trees, self.seed = trees, seed
        self._forest = None
        self._constant: float | None = None

    def fit(self, structures: Sequence[Structure], formation_energies: Sequence[float]) -> EnsembleSurrogate:
        """Fit on relaxed structures and their formation energies; one point gives a constant predictor."""
        y = np.asarray(formation_energies, dtype=float)
        if len(structures) != len(y) or not len(y):
            raise EvaluationError(f"the surrogate needs training data: {len(structures)} structures, {len(y)} "
                                  "energies")
        if len(y) < 2:
            self._constant = float(y[0])
            return self
        from sklearn.ensemble import RandomForestRegressor

        self._forest = RandomForestRegressor(n_estimators=self.trees, random_state=self.seed, n_jobs=1,
                                             min_samples_leaf=1, max_features=0.5)
        self._forest.fit(features(structures), y)
        return self

    def predict(self, structures: Sequence[Structure]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the predicted formation energy per atom (eV/atom)."""
        if not structures:
            return np.zeros(0), np.zeros(0)
        if self._forest is None:
            if self._constant is None:
                raise EvaluationError("the surrogate was not fitted")
            return np.full(len(structures), self._constant), np.zeros(len(structures))
        x = features(structures)
        per_tree = np.stack([t.predict(x) for t in self._forest.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)
