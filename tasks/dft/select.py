"""Pure functions of the DFT step: which candidates go to DFT, and what their DFT energies mean."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pymatgen.core import Composition

from tasks.errors import EvaluationError


def rank_for_dft(pool: Sequence[Mapping[str, Any]], already: set[str], per_round: int, remaining: int,
                 max_e_above_hull: float, max_sites: int, correction: tuple[Sequence[float], Sequence[float]] | None = None,
                 function: str = "greedy", kappa: float = 1.0, target: float = 0.1, seed: int = 0) -> list[dict]:
    """Every eligible candidate with its predicted DFT E_hull (MLIP E_hull + ``correction`` mean, eV/atom), sigma,
    acquisition value, ``chosen`` and ``rank``.

    ``pool`` rows carry ``hash``, ``e_above_hull`` (MLIP, eV/atom), ``novel`` and ``nsites``; ``correction`` is
    (mean, sigma) per pool row (default 0, 0). Eligible: not in ``already`` (computed with the same settings, in any
    state), a predicted E_hull at most ``max_e_above_hull``, at most ``max_sites`` sites. At most
    ``min(per_round, remaining)`` are chosen by ``function`` (greedy, lcb, ei, random); ties: novel first.
    """
    from tasks.acquisition.functions import acquisition_values

    shift, sigma = correction if correction is not None else ([0.0] * len(pool), [0.0] * len(pool))
    rows = [{"hash": p["hash"], "novel": p["novel"], "predicted_e_above_hull": p["e_above_hull"] + float(d),
             "sigma": float(sd)} for p, d, sd in zip(pool, shift, sigma)
            if p["hash"] not in already and p["e_above_hull"] is not None and p["nsites"] <= max_sites]
    rows = [r for r in rows if r["predicted_e_above_hull"] <= max_e_above_hull]
    rows.sort(key=lambda r: r["hash"])
    values = acquisition_values(np.array([r["predicted_e_above_hull"] for r in rows]),
                                np.array([r["sigma"] for r in rows]), function, kappa=kappa, target=target, seed=seed)
    order = sorted(range(len(rows)), key=lambda i: (-round(float(values[i]), 9), not rows[i]["novel"], rows[i]["hash"]))
    k = max(0, min(per_round, remaining))
    for n, i in enumerate(order):
        rows[i].update(function=function, value=float(values[i]), chosen=n < k, rank=n if n < k else None)
    return [rows[i] for i in order]


def select_for_dft(pool: Sequence[Mapping[str, Any]], already: set[str], per_round: int, remaining: int,
                   max_e_above_hull: float, max_sites: int, **acquisition: Any) -> list[str]:
    """Hashes chosen by :func:`rank_for_dft` (by default: lowest MLIP E_hull first, novel before known on ties)."""
    ranked = rank_for_dft(pool, already, per_round, remaining, max_e_above_hull, max_sites, **acquisition)
    return [r["hash"] for r in ranked if r["chosen"]]


def formation_energy_per_atom(formula: str, energy_per_atom: float, references: Mapping[str, float]) -> float:
    """``E_f = (E - sum_i n_i mu_i) / N`` in eV/atom, with ``references`` the elemental energies per atom
    computed with the same settings."""
    comp = Composition(formula)
    missing = sorted(str(el) for el in comp.elements if str(el) not in references)
    if missing:
        raise EvaluationError(f"no DFT elemental reference for {missing} (needed for {formula})")
    n = comp.num_atoms
    return energy_per_atom - sum(amount * references[str(el)] for el, amount in comp.items()) / n


def mean_absolute_error(pairs: Sequence[tuple[float, float]]) -> float | None:
    """MAE of ``(a, b)`` pairs, or None without pairs."""
    return sum(abs(a - b) for a, b in pairs) / len(pairs) if pairs else None


def lowest_elemental_phases(rows: Sequence[tuple[str, str, float, str]]) -> dict[str, tuple[str, str]]:
    """Element -> ``(label, structure json)`` of its lowest-energy elemental phase.

    ``rows``: ``(label, formula, energy per atom, relaxed structure json)`` of known phases (MLIP-relaxed).
    """
    best: dict[str, tuple[float, str, str]] = {}
    for label, formula, epa, structure in rows:
        comp = Composition(formula)
        if not comp.is_element or epa is None or structure is None:
            continue
        el = str(comp.elements[0])
        if el not in best or epa < best[el][0]:
            best[el] = (epa, label, structure)
    return {el: (label, structure) for el, (_, label, structure) in best.items()}
