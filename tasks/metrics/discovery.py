"""Judging a discovery campaign against held-out truth, per relaxation spent.

* **Held-out phases** of a chemical system: structures of the reference data that contain every element of
  the system and lie on the reference hull (their tabulated formation energy has E_hull <= ``tol``). A
  benchmark removes them from the campaign's seeds and from any generator training data.
* **Hits**, judged on each relaxation in the order the budget was spent, with the MLIP energy turned into a
  formation energy against fixed elemental references and E_hull measured against the full reference hull:
  a *rediscovery* is a converged relaxed structure that matches a held-out phase (StructureMatcher, the
  filter's tolerances; each phase counts once); a *S.U.N.* hit is stable (E_hull <= threshold), unique in
  the campaign (no earlier relaxed structure and no known phase matches it) and novel (no reference-data
  structure matches it). Single-element cells never count; stable ones are reported apart.
* **Curves**: cumulative hits after each relaxation; hits per 100 relaxations, and the area under the
  discovery curve (mean cumulative hits over the budget, so an arm that stops early keeps its last value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from conf.schema import MatcherConfig
from tasks.errors import EvaluationError
from tasks.metrics.hull import ReferenceHull, formation_energy_per_atom
from tasks.metrics.matching import MatchIndex

KINDS = ("rediscovery", "sun", "elemental", "known", "duplicate", "unstable", "failed", "repeat")
HIT_KINDS = ("rediscovery", "sun")


def held_out_phases(structures: pd.DataFrame, formation_energies: dict[str, float], hull: ReferenceHull,
                    systems: Sequence[Sequence[str]], tol: float = 1e-6,
                    matcher: MatcherConfig = MatcherConfig()) -> pd.DataFrame:
    """Stable phases of each system among ``structures`` (columns ``id``, ``structure``; ids looked up in
    ``formation_energies``, eV/atom): one row per distinct phase with ``id, system, formula,
    formation_energy_per_atom, e_above_hull, structure``."""
    rows = []
    for system in systems:
        elements = frozenset(system)
        index = MatchIndex(matcher)
        for sid, s in zip(structures["id"], structures["structure"]):
            if s is None or sid not in formation_energies:
                continue
            if frozenset(el.symbol for el in s.composition.elements) != elements:
                continue
            ef = formation_energies[sid]
            ehull = hull.e_above_hull(s.composition, ef)
            if ehull > tol or index.find(s) is not None:
                continue
            index.add(sid, s)
            rows.append({"id": sid, "system": "-".join(system), "formula": s.composition.reduced_formula,
                         "formation_energy_per_atom": ef, "e_above_hull": ehull, "structure": s})
    return pd.DataFrame(rows, columns=["id", "system", "formula", "formation_energy_per_atom", "e_above_hull",
                                       "structure"])


@dataclass(frozen=True)
class Relaxation:
    """One relaxation a campaign spent, in budget order."""

    hash: str
    round: int
    formula: str
    converged: bool
    energy_per_atom: float | None = None  # eV/atom, MLIP
    structure: Structure | None = None  # relaxed
    relaxed_match: str = ""  # the campaign's own verdict: known phase or earlier candidate it relaxed into


class DiscoveryJudge:
    """Judges the relaxations of campaigns in one chemical system against held-out truth.

    Parameters
    ----------
    heldout, reference
        ``(id, Structure)`` of the held-out phases and of every known structure of the system (the reference
        data, held-out phases included): a match with ``reference`` makes a structure not novel.
    hull, elemental
        The full reference hull and elemental energies per atom (eV/atom) that turn MLIP energies into
        formation energies.
    """

    def __init__(self, heldout: Sequence[tuple[str, Structure]], reference: Sequence[tuple[str, Structure]],
                 hull: ReferenceHull, elemental: dict[str, float], threshold: float = 0.1,
                 matcher: MatcherConfig = MatcherConfig()) -> None:
        self.matcher, self.hull, self.elemental, self.threshold = matcher, hull, elemental, threshold
        self._heldout = MatchIndex(matcher)
        self._reference = MatchIndex(matcher)
        for label, s in heldout:
            self._heldout.add(label, s)
        for label, s in reference:
            self._reference.add(label, s)

    def e_above_hull(self, structure: Structure, energy_per_atom: float) -> float:
        comp = structure.composition
        return self.hull.e_above_hull(comp, formation_energy_per_atom(comp, energy_per_atom, self.elemental))

    def judge(self, relaxations: Sequence[Relaxation]) -> pd.DataFrame:
        """One row per relaxation: ``k`` (1-based), ``hash, round, formula, e_above_hull`` (reference hull,
        eV/atom), ``kind`` (one of :data:`KINDS`), ``match`` (the held-out or reference id it matched) and
        ``new_composition`` (its reduced formula is absent from the reference hull table: a S.U.N. hit that
        cannot be a known phase missing from the reference structures)."""
        seen = MatchIndex(self.matcher)
        found: set[str] = set()
        hashes = {r.hash for r in relaxations}  # a relaxed_match naming one of these is left to ``seen``
        rows = []
        for k, r in enumerate(relaxations, start=1):
            kind, match, ehull = "failed", "", np.nan
            if r.converged and r.structure is not None and r.energy_per_atom is not None:
                try:
                    ehull = self.e_above_hull(r.structure, r.energy_per_atom)
                except EvaluationError as exc:
                    raise EvaluationError(f"candidate {r.hash} ({r.formula}): {exc}") from exc
                kind, match = self._kind(r, ehull, seen, found, hashes)
                seen.add(r.hash, r.structure)
            rows.append({"k": k, "hash": r.hash, "round": r.round, "formula": r.formula, "e_above_hull": ehull,
                         "kind": kind, "match": match, "new_composition": r.formula not in self.hull.formulas})
        return pd.DataFrame(rows, columns=["k", "hash", "round", "formula", "e_above_hull", "kind", "match",
                                           "new_composition"])

    def _kind(self, r: Relaxation, ehull: float, seen: MatchIndex, found: set[str],
              hashes: set[str]) -> tuple[str, str]:
        stable = ehull <= self.threshold
        if len(r.structure.composition.elements) == 1:
            return ("elemental" if stable else "unstable"), ""
        phase = self._heldout.find(r.structure)
        if phase is not None:
            if phase in found:
                return "repeat", str(phase)
            found.add(phase)
            return "rediscovery", str(phase)
        known = self._reference.find(r.structure)
        if known is not None:
            return "known", str(known)
        earlier = seen.find(r.structure)
        if earlier is not None:
            return "duplicate", str(earlier)
        if r.relaxed_match and r.relaxed_match not in hashes:  # the campaign matched it to one of its known phases
            return "known", r.relaxed_match
        return ("sun" if stable else "unstable"), ""


def cumulative(kinds: Sequence[str], budget: int, which: Sequence[str] = HIT_KINDS) -> np.ndarray:
    """Cumulative hits after relaxation 1..``budget``; after the last relaxation spent the curve stays flat."""
    hits = np.array([k in which for k in kinds[:budget]], dtype=float)
    curve = np.cumsum(hits) if len(hits) else np.zeros(0)
    if len(curve) < budget:
        curve = np.concatenate([curve, np.full(budget - len(curve), curve[-1] if len(curve) else 0.0)])
    return curve


def curve_metrics(kinds: Sequence[str], budget: int) -> dict[str, float]:
    """Counts of each kind within the budget, hits per 100 relaxations spent and the area under the curves
    (mean cumulative hits over the budget)."""
    spent = min(len(kinds), budget)
    within = list(kinds[:budget])
    out: dict[str, float] = {"spent": spent, **{kind: within.count(kind) for kind in KINDS}}
    for name, which in (("hits", HIT_KINDS), ("rediscovery", ("rediscovery",)), ("sun", ("sun",))):
        n = sum(k in which for k in within)
        out[f"{name}_per_100"] = 100.0 * n / spent if spent else 0.0
        out[f"auc_{name}"] = float(cumulative(within, budget, which).mean()) if budget else 0.0
    out["hits"] = out["rediscovery"] + out["sun"]
    return out


def enhancement(on: Sequence[float], off: Sequence[float]) -> dict[str, float | None]:
    """Enhancement factor of paired arms (e.g. learning on / off over seeds): the ratio of the means, and the
    mean and spread of the per-pair ratios where the denominator is not zero (None when undefined), with the
    number of pairs whose denominator was zero."""
    on, off = np.asarray(on, dtype=float), np.asarray(off, dtype=float)
    ratio = float(on.mean() / off.mean()) if len(off) and off.mean() > 0 else None
    pairs = on[off > 0] / off[off > 0] if len(off) else np.zeros(0)
    return {"ratio_of_means": ratio, "mean_of_ratios": float(pairs.mean()) if len(pairs) else None,
            "std_of_ratios": float(pairs.std(ddof=1)) if len(pairs) > 1 else None, "pairs": int(len(pairs)),
            # pairs left out of the per-pair ratios because off found nothing (on > 0 there favours learning)
            "off_zero_on_positive": int(((off == 0) & (on > 0)).sum()), "both_zero": int(((off == 0) & (on == 0)).sum()),
            "on_mean": float(on.mean()) if len(on) else None, "off_mean": float(off.mean()) if len(off) else None}
