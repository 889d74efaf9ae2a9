"""Energy above a reference convex hull built from a table of formation energies.

The table format is MP-20's hull table (``../shared/data/lemat_genbench/mp20_hulls``): one row per phase
with a formula column and ``formation_energy_per_atom`` (eV/atom). Elements sit at 0. Hulls are built per
chemical system on demand from the entries of that system and its sub-systems (what pymatgen's
PatchedPhaseDiagram does for all systems at once, minutes for 36k entries; here only the systems asked
for are built). Total energies are turned into formation energies with elemental references, e.g. MP's
elemental reference entries (matbench-discovery's ``mp-elemental-reference-entries.json.gz``).
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import pandas as pd
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element
from pymatgen.core.composition import CompositionError

from tasks.errors import EvaluationError


class ReferenceHull:
    """Formation-energy hulls of a reference set, one PhaseDiagram per chemical system (cached)."""

    def __init__(self, entries: list[PDEntry]) -> None:
        self._by_system: dict[frozenset[str], list[PDEntry]] = defaultdict(list)
        for e in entries:
            self._by_system[frozenset(el.symbol for el in e.composition.elements)].append(e)
        self.elements = {el for system in self._by_system for el in system}
        self.formulas = {e.composition.reduced_formula for e in entries}  # compositions the table knows
        self._cache: dict[frozenset[str], PhaseDiagram] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_system.values())

    @classmethod
    def from_table(cls, path: Path, formula_column: str | None = None,
                   energy_column: str = "formation_energy_per_atom") -> ReferenceHull:
        """Read a CSV (``.csv`` or ``.csv.gz``) with a formula column and formation energies (eV/atom)."""
        df = pd.read_csv(path)
        formula_column = formula_column or next((c for c in ("pretty_formula", "formula", "composition")
                                                 if c in df.columns), None)
        if formula_column is None or energy_column not in df.columns:
            raise EvaluationError(f"{path}: a hull table needs a formula column (pretty_formula, formula or "
                                  f"composition) and {energy_column!r}; it has {list(df.columns)}")
        df = df[[formula_column, energy_column]].dropna()
        entries = []
        for formula, e in zip(df[formula_column], df[energy_column]):
            comp = Composition(formula)
            entries.append(PDEntry(comp, float(e) * comp.num_atoms))
        return cls(entries)

    def phase_diagram(self, elements: frozenset[str]) -> PhaseDiagram:
        if elements not in self._cache:
            entries = [PDEntry(Composition(el), 0.0) for el in elements]
            for size in range(1, len(elements) + 1):
                for subset in itertools.combinations(sorted(elements), size):
                    entries.extend(self._by_system.get(frozenset(subset), ()))
            self._cache[elements] = PhaseDiagram(entries)
        return self._cache[elements]

    def e_above_hull(self, composition: Composition, formation_energy_per_atom: float) -> float:
        """Energy above the reference hull (eV/atom; negative when below it).

        Raises
        ------
        EvaluationError
            An element of ``composition`` has no phase in the reference set.
        """
        elements = frozenset(el.symbol for el in composition.elements)
        missing = sorted(elements - self.elements)
        if missing:
            raise EvaluationError(f"elements {missing} are not in the reference hull")
        entry = PDEntry(composition, formation_energy_per_atom * composition.num_atoms)
        return float(self.phase_diagram(elements).get_decomp_and_e_above_hull(entry, allow_negative=True)[1])


@lru_cache(maxsize=4)
def _cached_hull(path: str, stamp: tuple[int, int]) -> ReferenceHull:
    return ReferenceHull.from_table(Path(path))


def load_reference_hull(path: Path) -> ReferenceHull:
    """:meth:`ReferenceHull.from_table`, read once per process and file version (campaign rounds and
    benchmarks evaluate against the same table many times).

    Raises
    ------
    EvaluationError
        The file is missing, unreadable or lacks the needed columns.
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"reference hull table not found: {path}")
    stat = path.stat()
    try:
        return _cached_hull(str(path.resolve()), (stat.st_size, stat.st_mtime_ns))
    except (OSError, ValueError, KeyError, CompositionError) as exc:  # pandas parse errors are ValueErrors
        raise EvaluationError(f"cannot read the reference hull table {path}: {exc}") from exc


def load_elemental_references(path: Path) -> dict[str, float]:
    """Energy per atom of each element (eV/atom) from a JSON(.gz) of pymatgen ComputedEntry dicts keyed by
    element (matbench-discovery's MP elemental reference entries) or of plain numbers.

    Raises
    ------
    EvaluationError
        The file is missing or is not such a JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"elemental references not found: {path}")
    opener = gzip.open if str(path).endswith(".gz") else open
    out = {}
    try:
        with opener(path, "rt") as fh:
            data = json.load(fh)
        for el, value in data.items():
            if isinstance(value, dict):
                energy = value.get("energy_per_atom")
                if energy is None:
                    natoms = Composition(value["composition"]).num_atoms
                    energy = (value["energy"] + value.get("correction", 0.0)) / natoms
                out[el] = float(energy)
            else:
                out[el] = float(value)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EvaluationError(f"{path} is not a JSON of elemental reference entries or numbers keyed by element "
                              f"({type(exc).__name__}: {exc})") from exc
    return out


def formation_energy_per_atom(composition: Composition, energy_per_atom: float,
                              references: dict[str, float]) -> float:
    """``E/atom - sum_i x_i mu_i`` with elemental reference energies ``mu`` (eV/atom)."""
    missing = sorted(el.symbol for el in composition.elements if el.symbol not in references)
    if missing:
        raise EvaluationError(f"no elemental reference energy for {missing}")
    fractions = composition.fractional_composition
    return energy_per_atom - sum(fractions[Element(el)] * mu for el, mu in references.items()
                                 if Element(el) in fractions)
