"""Condition update: the next round's property targets move towards where the campaign's hits are.

A conditional generator (diffusion, GAN trained on property columns) is asked for what the campaign has learned
works, not only for what the user wrote: each property range the user set is narrowed to the span of the hits'
values (widened by a margin, never outside the user's range), and an ``e_above_hull`` target, which no model can
condition on directly (it depends on the hull), becomes a formation-energy range around the hits' formation
energies. Hits are candidates at or below the stability threshold by their best label (lab > DFT > MLIP).
Pure functions: no Prefect, no store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from conf.schema import TargetRange

EF = "formation_energy_per_atom"


def campaign_hits(labels: Mapping[str, Mapping[str, float]], threshold: float) -> list[Mapping[str, float]]:
    """The labels (``{property: value}``) of the candidates whose E_hull is at or below ``threshold`` (eV/atom)."""
    return [lab for lab in labels.values() if lab.get("e_above_hull", float("inf")) <= threshold]


def _span(values: Sequence[float], margin: float) -> tuple[float, float]:
    return min(values) - margin, max(values) + margin


def learned_targets(user: Mapping[str, TargetRange], hits: Sequence[Mapping[str, float]], margin: float,
                    min_hits: int) -> tuple[dict[str, TargetRange], dict[str, list[float]]]:
    """The targets of the next round and what changed (``{property: [min, max]}``, empty when nothing did).

    ``margin`` widens the hits' span (property units: eV/atom for energies, eV for gaps); fewer than ``min_hits``
    hits change nothing. A single-value target is the user's exact request and is kept as given."""
    targets = dict(user)
    if len(hits) < min_hits:
        return targets, {}
    changed: dict[str, list[float]] = {}
    for name, target in user.items():
        values = [h[name] for h in hits if name in h]
        if name == "e_above_hull" or target.value is not None or not values:
            continue
        lo, hi = _span(values, margin)
        lo = lo if target.min is None else max(lo, target.min)
        hi = hi if target.max is None else min(hi, target.max)
        if lo <= hi:  # hits outside the user's range (it changed since) leave it alone
            targets[name] = TargetRange(min=lo, max=hi)
            changed[name] = [lo, hi]
    formation = [h[EF] for h in hits if EF in h]
    if "e_above_hull" in user and EF not in user and formation:
        lo, hi = _span(formation, margin)
        targets[EF] = TargetRange(min=lo, max=hi)
        changed[EF] = [lo, hi]
    return targets, changed
