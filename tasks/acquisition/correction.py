"""A correction learned from a campaign's own DFT (or lab) values, per composition, with its uncertainty.

Bayesian linear regression of ``observed - predicted`` on the composition's element fractions (one coefficient
per element, as fitted anion/element corrections are in the Materials Project's compatibility schemes), prior
``N(0, prior_sigma^2)`` per coefficient and noise ``noise``. The posterior gives every composition a correction
and a standard deviation: with no value the correction is 0 with the prior's spread; each value pulls
compositions that share its elements towards it and narrows their uncertainty. Used for MLIP formation energies
towards DFT (eV/atom) and for the property predictor's band gaps towards DFT/lab (eV).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Composition


class CompositionCorrection:
    def __init__(self, prior_sigma: float = 0.1, noise: float = 0.03) -> None:
        self.prior_sigma, self.noise = prior_sigma, noise
        self.elements: list[str] = []
        self._mean = np.zeros(0)
        self._cov = np.zeros((0, 0))

    def _x(self, formulas: Sequence[str], elements: list[str]) -> np.ndarray:
        x = np.zeros((len(formulas), len(elements)))
        for i, f in enumerate(formulas):
            for el, frac in Composition(f).fractional_composition.get_el_amt_dict().items():
                x[i, elements.index(el)] = frac
        return x

    def fit(self, pairs: Sequence[tuple[str, float, float]]) -> CompositionCorrection:
        """``pairs``: ``(formula, predicted, observed)``, e.g. E_f by MLIP and by DFT in eV/atom."""
        self.elements = sorted({el for f, _, _ in pairs for el in Composition(f).get_el_amt_dict()})
        k = len(self.elements)
        if not pairs:
            self._mean, self._cov = np.zeros(0), np.zeros((0, 0))
            return self
        x = self._x([f for f, _, _ in pairs], self.elements)
        y = np.array([dft - mlip for _, mlip, dft in pairs])
        precision = x.T @ x / self.noise**2 + np.eye(k) / self.prior_sigma**2
        self._cov = np.linalg.inv(precision)
        self._mean = self._cov @ x.T @ y / self.noise**2
        return self

    def predict(self, formulas: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Correction to add to the prediction and its standard deviation, per formula."""
        extra = sorted({el for f in formulas for el in Composition(f).get_el_amt_dict()} - set(self.elements))
        elements = self.elements + extra
        k, n = len(self.elements), len(elements)
        mean = np.concatenate([self._mean, np.zeros(n - k)])
        cov = np.eye(n) * self.prior_sigma**2
        cov[:k, :k] = self._cov
        x = self._x(formulas, elements)
        return x @ mean, np.sqrt(np.einsum("ij,jk,ik->i", x, cov, x))
