"""Target properties an MLIP cannot give (band gap) inside a round: predicted, combined with DFT and lab values,
and counted.

The evaluate step predicts every evaluated candidate's target property with the campaign's property predictor
(mean and sigma, stored with source ``predictor``). The campaign's own DFT and lab values retrain its
correction (:class:`Correction`, a Bayesian per-element model of the residuals) whenever one arrives; every
prediction judged, acquired or guided on is corrected, the correction's uncertainty added to sigma. A candidate
meets a target on the best value it has: lab, then DFT, then the (corrected) predictor. The round summary's
``property_satisfaction`` counts, per target property and per source, how many of the round's evaluated
candidates have a value and how many of those lie in the target range.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from conf.schema import CampaignConfig, TargetRange
from tasks.results import PropertyValue

if TYPE_CHECKING:  # torch is imported only where a predictor is loaded
    from tasks.properties.predictor import PropertyPredictor

MLIP_PROPERTIES = frozenset({"energy_per_atom", "formation_energy_per_atom", "e_above_hull"})
SOURCES = ("lab", "dft", "predictor")  # best first


@lru_cache(maxsize=4)
def _load(path: str) -> PropertyPredictor:
    from tasks.properties.predictor import PropertyPredictor

    return PropertyPredictor.load(path)


def predictor_for(cfg: CampaignConfig) -> PropertyPredictor | None:
    """The campaign's predictor when a target names a property the MLIP cannot give; None otherwise (or when
    ``evaluate.predictor`` is null). A predictor of another property than the target's is refused."""
    wanted = sorted(set(cfg.target.properties) - MLIP_PROPERTIES)
    if not wanted or cfg.evaluate.predictor is None:
        return None
    from tasks.errors import GeneratorError
    from tasks.generators.fetch import resolve_checkpoint
    from tasks.properties.predictor import PredictorError

    try:
        path = resolve_checkpoint(cfg.evaluate.predictor, cfg.evaluate.predictor_sha256, kind="predictor")
    except GeneratorError as exc:
        raise PredictorError(f"evaluate.predictor: {exc}") from exc
    predictor = _load(str(path))
    if predictor.property not in wanted:
        raise PredictorError(f"evaluate.predictor {cfg.evaluate.predictor} predicts {predictor.property}; the "
                             f"target needs {', '.join(wanted)} (train one with matloop train-predictor --property)")
    return predictor


def predict(predictor: PropertyPredictor, candidates: Sequence[tuple[str, str]]) -> list[PropertyValue]:
    """The predictor's own values (with sigma) for ``(hash, formula)`` pairs: what is stored, uncorrected, so the
    campaign's correction is always fitted on the same footing."""
    if not candidates:
        return []
    mean, sigma = predictor.predict([f for _, f in candidates])
    return [PropertyValue(h, predictor.property, float(m), predictor.unit, "predictor", float(s))
            for (h, _), m, s in zip(candidates, mean, sigma)]


def recalibrated(properties: Sequence[PropertyValue], names: Sequence[str], formulas: dict[str, str]
                 ) -> tuple[list[PropertyValue], dict[str, Correction]]:
    """``properties`` with every prediction of ``names`` corrected by the campaign's correction
    (:func:`campaign_correction`; ``formulas``: hash -> reduced formula), and the corrections."""
    fitted = {name: campaign_correction(properties, name, formulas) for name in names}
    out = [p for p in properties if p.source != "predictor" or p.name not in fitted]
    for name, correction in fitted.items():
        out += corrected([p for p in properties if p.source == "predictor" and p.name == name], correction, formulas)
    return out, fitted


def corrected(values: Sequence[PropertyValue], correction: Correction, formulas: dict[str, str]
              ) -> list[PropertyValue]:
    """``values`` with the campaign's correction applied (what targets are judged on)."""
    mean, sigma = correction.apply([formulas[p.hash] for p in values], np.array([p.value for p in values]),
                                   np.array([p.uncertainty or 0.0 for p in values]))
    return [p._replace(value=float(m), uncertainty=float(s)) for p, m, s in zip(values, mean, sigma)]


class Correction:
    """A campaign's correction of its predictor, retrained on its DFT and lab values whenever one arrives: a
    Bayesian linear model of ``observed - predicted`` on element fractions
    (:class:`~tasks.acquisition.correction.CompositionCorrection`, prior ``prior_sigma`` per element, noise the
    predictions' median sigma), so compositions sharing elements with a computed one move towards it and the rest
    keep the predictor's value with a wider sigma. Fitted on ``n`` candidates; with none it changes nothing."""

    def __init__(self, pairs: Sequence[tuple[str, float, float]] = (), noise: float = 0.5,
                 prior_sigma: float = 1.0) -> None:
        from tasks.acquisition.correction import CompositionCorrection

        self.n = len(pairs)
        self.model = CompositionCorrection(prior_sigma, noise).fit(sorted(pairs)) if pairs else None

    def apply(self, formulas: Sequence[str], mean: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Corrected means and sigmas (the correction's own sigma added in quadrature)."""
        if self.model is None or not len(formulas):
            return np.asarray(mean, dtype=float), np.asarray(sigma, dtype=float)
        shift, spread = self.model.predict(list(formulas))
        return mean + shift, np.sqrt(np.asarray(sigma, dtype=float) ** 2 + spread ** 2)

    def record(self) -> dict[str, Any]:
        """For the round summary: how many values it was fitted on and the shift per pure element."""
        if self.model is None:
            return {"n": 0}
        shift, _ = self.model.predict(self.model.elements)
        return {"n": self.n, "per_element": {el: round(float(v), 4) for el, v in zip(self.model.elements, shift)}}


def campaign_correction(properties: Sequence[PropertyValue], name: str, formulas: dict[str, str]) -> Correction:
    """:class:`Correction` fitted on a campaign's stored predictions of ``name`` and its best DFT/lab values of the
    same candidates (``formulas``: hash -> reduced formula)."""
    observed = {h: v[name] for h, v in best_values([p for p in properties if p.source in ("lab", "dft")],
                                                    [name]).items()}
    paired = [p for p in properties if p.source == "predictor" and p.name == name and p.hash in observed
              and p.hash in formulas]
    if not paired:
        return Correction()
    noise = max(float(np.median([p.uncertainty or 0.0 for p in paired])), 0.1)
    return Correction([(formulas[p.hash], p.value, observed[p.hash]) for p in paired], noise=noise)


def target_probability(predictor: PropertyPredictor, formulas: Sequence[str],
                       targets: dict[str, TargetRange], correction: Correction | None = None) -> np.ndarray:
    """Probability that each composition meets the target on the predictor's property: the Gaussian mass of the
    corrected prediction (mean and sigma, the correction's sigma included) inside the range (a ``value`` target:
    within 0.05)."""
    target = targets.get(predictor.property)
    if target is None or not len(formulas):
        return np.ones(len(formulas))
    mean, sigma = predictor.predict(list(formulas))
    mean, sigma = (correction or Correction()).apply(list(formulas), mean, sigma)
    sigma = np.clip(sigma, 1e-6, None)
    low, high = ((target.value - 0.05, target.value + 0.05) if target.value is not None
                 else (target.min if target.min is not None else -np.inf, target.max if target.max is not None
                       else np.inf))
    from scipy.stats import norm  # here, not at import: `matloop status` has no use for scipy.stats

    return norm.cdf((high - mean) / sigma) - norm.cdf((low - mean) / sigma)


def best_properties(properties: Sequence[PropertyValue], names: Sequence[str]
                    ) -> dict[str, dict[str, PropertyValue]]:
    """Per candidate hash, each of ``names`` as the stored value of its best source (lab > DFT > predictor)."""
    rank = {s: i for i, s in enumerate(SOURCES)}
    best: dict[str, dict[str, PropertyValue]] = {}
    for p in properties:
        if p.name in names and p.source in rank:
            have = best.setdefault(p.hash, {}).get(p.name)
            if have is None or rank[p.source] < rank[have.source]:
                best[p.hash][p.name] = p
    return best


def best_values(properties: Sequence[PropertyValue], names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per candidate hash, each of ``names`` from its best source (lab > DFT > predictor)."""
    return {h: {n: p.value for n, p in d.items()} for h, d in best_properties(properties, names).items()}


def satisfaction(properties: Sequence[PropertyValue], hashes: set[str], targets: dict[str, TargetRange]
                 ) -> dict[str, dict[str, dict[str, Any]]]:
    """``{property: {source: {"met": k, "of": n, "rate": k / n}}}`` over the candidates ``hashes``, for the
    targets an MLIP cannot give."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, target in targets.items():
        if name in MLIP_PROPERTIES:
            continue
        per = {}
        for source in SOURCES:
            values = [p.value for p in properties if p.name == name and p.source == source and p.hash in hashes]
            met = sum(target.contains(v, tolerance=0.05) for v in values)
            per[source] = {"met": met, "of": len(values), "rate": met / len(values) if values else None}
        out[name] = per
    return out


def describe(per_property: dict[str, dict[str, dict[str, Any]]] | None) -> str:
    """``band_gap: predictor 3/10, dft 1/1, lab -`` (met / with a value) for status tables and reports."""
    if not per_property:
        return "-"
    parts = []
    for name, per in per_property.items():
        cells = [f"{src} {v['met']}/{v['of']}" if v.get("of") else f"{src} -" for src, v in per.items()]
        parts.append(f"{name}: {', '.join(cells)}")
    return "; ".join(parts)
