"""MLIP screen: a proposed cell's E_hull from one single-point energy of the campaign's own MLIP, no relaxation.

A relaxation costs hundreds of force calls; a single point costs one, so a round can screen every proposal and
relax the ones that already look stable. Relaxation only lowers the energy, so the screened E_hull is an upper
bound of the relaxed one (up to the MLIP's noise). On the discovery benchmark's pools, greedy choice by this
screen found about twice the hits of random choice per relaxation (benchmarks/acquisition.py).
Pure functions over an ASE calculator: no Prefect, no store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from pymatgen.core import Composition, Structure

from tasks.errors import EvaluationError

UNSCREENABLE = 10.0  # eV/atom: a cell the MLIP cannot evaluate (no neighbours, non-finite energy) is chosen last


def single_point_energies(structures: Sequence[Structure], calc) -> np.ndarray:
    """Energy per atom (eV/atom) of each structure as given; ``nan`` where the calculator fails or is not finite."""
    from pymatgen.io.ase import AseAtomsAdaptor

    out = []
    for s in structures:
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.calc = calc
        try:
            e = float(atoms.get_potential_energy()) / len(atoms)
        except Exception:  # graph building fails for isolated atoms; any calculator failure ranks the cell last
            e = math.nan
        out.append(e if math.isfinite(e) else math.nan)
    return np.asarray(out, dtype=float)


def screened_e_above_hull(structures: Sequence[Structure], energies: np.ndarray, elemental: Mapping[str, float],
                          e_above_hull: Callable[[Composition, float], float]) -> np.ndarray:
    """E_hull (eV/atom) of each structure from its energy per atom, the elemental reference energies (eV/atom)
    and the campaign's hull; :data:`UNSCREENABLE` where the energy is ``nan`` or an element has no reference."""
    from tasks.metrics.hull import formation_energy_per_atom

    out = []
    for s, epa in zip(structures, energies):
        if not math.isfinite(epa):
            out.append(UNSCREENABLE)
            continue
        try:
            out.append(e_above_hull(s.composition, formation_energy_per_atom(s.composition, float(epa), elemental)))
        except EvaluationError:
            out.append(UNSCREENABLE)
    return np.asarray(out, dtype=float)
