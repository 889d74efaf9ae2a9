"""Pure functions of the DFT step: which candidates go to DFT, and what their DFT energies mean."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymatgen.core import Composition

from tasks.errors import EvaluationError


def select_for_dft(pool: Sequence[Mapping[str, Any]], already: set[str], per_round: int, remaining: int,
                   max_e_above_hull: float, max_sites: int) -> list[str]:
    """Hashes of the candidates to compute: lowest MLIP E_hull first, novel before known on ties.

    ``pool`` rows carry ``hash``, ``e_above_hull`` (eV/atom), ``novel`` and ``nsites``; candidates in
    ``already`` (computed with the same settings, in any state) are skipped. At most
    ``min(per_round, remaining)`` are chosen.
    """
    eligible = [p for p in pool if p["hash"] not in already and p["e_above_hull"] is not None
                and p["e_above_hull"] <= max_e_above_hull and p["nsites"] <= max_sites]
    eligible.sort(key=lambda p: (round(p["e_above_hull"], 6), not p["novel"], p["hash"]))
    return [p["hash"] for p in eligible[:max(0, min(per_round, remaining))]]


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
