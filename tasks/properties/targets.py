"""Target properties an MLIP cannot give (band gap) inside a round: predicted, combined with DFT and lab values,
and counted.

The evaluate step predicts every evaluated candidate's target property with the campaign's property predictor
(mean and sigma, stored with source ``predictor``). The campaign's own DFT and lab values recalibrate it: a
Bayesian constant offset (:func:`fit_offset`) shifts every prediction judged or acquired on, its uncertainty
added to sigma. A candidate meets a target on the best value it has: lab, then DFT, then the (corrected)
predictor. The round summary's ``property_satisfaction`` counts, per target property and per source,
how many of the round's evaluated candidates have a value and how many of those lie in the target range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from scipy.stats import norm

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
    campaign's offset is always fitted on the same footing."""
    if not candidates:
        return []
    mean, sigma = predictor.predict([f for _, f in candidates])
    return [PropertyValue(h, predictor.property, float(m), predictor.unit, "predictor", float(s))
            for (h, _), m, s in zip(candidates, mean, sigma)]


def recalibrated(properties: Sequence[PropertyValue], names: Sequence[str]
                 ) -> tuple[list[PropertyValue], dict[str, Offset]]:
    """``properties`` with every prediction of ``names`` shifted by the campaign's offset (:func:`campaign_offset`),
    and the offsets."""
    offsets = {name: campaign_offset(properties, name) for name in names}
    out = [p for p in properties if p.source != "predictor" or p.name not in offsets]
    for name, offset in offsets.items():
        out += corrected([p for p in properties if p.source == "predictor" and p.name == name], offset)
    return out, offsets


def corrected(values: Sequence[PropertyValue], offset: Offset) -> list[PropertyValue]:
    """``values`` with the campaign's offset applied (what targets are judged on)."""
    return [p._replace(value=p.value + offset.shift, uncertainty=math.hypot(p.uncertainty or 0.0, offset.sigma))
            for p in values]


class Offset(NamedTuple):
    """A campaign's correction of its predictor: ``shift`` added to every mean, ``sigma`` its uncertainty (added
    in quadrature to every prediction's sigma), fitted on ``n`` candidates with DFT or lab values."""

    shift: float = 0.0
    sigma: float = 0.0
    n: int = 0


def fit_offset(predicted: Sequence[PropertyValue], observed: dict[str, float], prior_sigma: float = 1.0) -> Offset:
    """Bayesian constant offset between the predictor and the campaign's DFT/lab values of the same candidates:
    prior N(0, ``prior_sigma``^2), each residual weighted by the prediction's own sigma. With no pair it is 0."""
    pairs = [(observed[p.hash] - p.value, max(p.uncertainty or 0.0, 1e-3)) for p in predicted if p.hash in observed]
    if not pairs:
        return Offset()
    precision = 1.0 / prior_sigma ** 2 + sum(1.0 / s ** 2 for _, s in pairs)
    shift = sum(r / s ** 2 for r, s in pairs) / precision
    return Offset(float(shift), float(precision ** -0.5), len(pairs))


def campaign_offset(properties: Sequence[PropertyValue], name: str) -> Offset:
    """:func:`fit_offset` on a campaign's stored predictions of ``name`` and its best DFT/lab values of it."""
    observed = {h: v[name] for h, v in best_values([p for p in properties if p.source in ("lab", "dft")],
                                                    [name]).items()}
    return fit_offset([p for p in properties if p.source == "predictor" and p.name == name], observed)


def target_probability(predictor: PropertyPredictor, formulas: Sequence[str],
                       targets: dict[str, TargetRange], offset: Offset = Offset()) -> np.ndarray:
    """Probability that each composition meets the target on the predictor's property: the Gaussian mass of the
    prediction (mean + offset, sigma and the offset's sigma) inside the range (a ``value`` target: within 0.05)."""
    target = targets.get(predictor.property)
    if target is None or not len(formulas):
        return np.ones(len(formulas))
    mean, sigma = predictor.predict(list(formulas))
    mean, sigma = mean + offset.shift, np.sqrt(sigma ** 2 + offset.sigma ** 2)
    sigma = np.clip(sigma, 1e-6, None)
    low, high = ((target.value - 0.05, target.value + 0.05) if target.value is not None
                 else (target.min if target.min is not None else -np.inf, target.max if target.max is not None
                       else np.inf))
    return norm.cdf((high - mean) / sigma) - norm.cdf((low - mean) / sigma)


def best_values(properties: Sequence[PropertyValue], names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per candidate hash, each of ``names`` from its best source (lab > DFT > predictor)."""
    rank = {s: i for i, s in enumerate(SOURCES)}
    best: dict[str, dict[str, tuple[int, float]]] = {}
    for p in properties:
        if p.name in names and p.source in rank:
            have = best.setdefault(p.hash, {}).get(p.name)
            if have is None or rank[p.source] < have[0]:
                best[p.hash][p.name] = (rank[p.source], p.value)
    return {h: {n: v for n, (_, v) in d.items()} for h, d in best.items()}


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
