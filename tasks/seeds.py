"""Seed and reference structures: loaders for the formats the field uses, and the campaign's seed set.

Every loader returns ``(seeds, skipped)``: the structures it could read and, for each one it could not,
``(identifier, reason)``. A malformed entry never stops the others.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Lattice, Structure

from conf.schema import SeedSource
from tasks.errors import SeedError

log = logging.getLogger("matloop.seeds")

Skipped = list[tuple[str, str]]


class Seed(BaseModel):
    """A known structure: a reference phase of the target system or a template for generators."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    id: str = Field(description="Stable identifier, e.g. 'aflow:231' or an MP id.")
    structure: Structure
    source: str = Field(description="Seed source kind it came from.")
    label: str = Field("", description="Mineral / prototype tag, if any.")
    relax_cell: bool = Field(True, description="False for molecules in a box (relax positions only).")

    @property
    def formula(self) -> str:
        return self.structure.composition.reduced_formula


class SeedSet(BaseModel):
    """Seeds of one campaign: known phases of the target system and the wider template pool."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    known_phases: list[Seed] = Field(description="Phases whose elements lie in the target system.")
    templates: list[Seed] = Field(description="Every usable seed (generators draw on these).")
    skipped: Skipped = Field(default_factory=list, description="(id, reason) of unreadable seeds.")


def _parse_cif(text: str) -> Structure:
    return Structure.from_str(text, fmt="cif")


def load_mp20_csv(path: Path, limit: int | None = None) -> tuple[list[Seed], Skipped]:
    """Read an MP-20-format CSV (CDVAE data: ``material_id``, ``cif``, property columns)."""
    import pandas as pd

    try:
        df = pd.read_csv(path, nrows=limit)
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as exc:  # pandas' ParserError is a ValueError
        raise SeedError(f"seed source csv: {path} is not a readable CSV file: {exc}") from None
    if "cif" not in df.columns:
        raise SeedError(f"{path}: an MP-20-format CSV needs a 'cif' column (has {list(df.columns)})")
    ids = df["material_id"].astype(str) if "material_id" in df.columns else df.index.astype(str)
    seeds, skipped = [], []
    for mid, cif in zip(ids, df["cif"]):
        try:
            seeds.append(Seed(id=mid, structure=_parse_cif(cif), source="csv"))
        except Exception as exc:  # pymatgen raises many types on bad CIFs
            skipped.append((mid, f"unparseable CIF: {type(exc).__name__}: {exc}"))
    return seeds, skipped


def load_cif_dir(path: Path, limit: int | None = None) -> tuple[list[Seed], Skipped]:
    """Read every ``*.cif`` in a folder (sorted by name); the file stem is the id."""
    if not path.is_dir():
        raise SeedError(f"CIF folder not found: {path}")
    seeds, skipped = [], []
    for f in sorted(path.glob("*.cif"))[:limit]:
        try:
            seeds.append(Seed(id=f.stem, structure=_parse_cif(f.read_text()), source="cif_dir"))
        except Exception as exc:
            skipped.append((f.name, f"unparseable CIF: {type(exc).__name__}: {exc}"))
    return seeds, skipped


def load_extxyz(path: Path, limit: int | None = None) -> tuple[list[Seed], Skipped]:
    """Read periodic frames of an extended-XYZ file; ``info['id']`` names a frame when present."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from tasks.errors import StructureFileError
    from tasks.metrics.io import read_extxyz

    if not path.is_file():
        raise SeedError(f"extxyz file not found: {path}")
    try:
        frames = read_extxyz(path, limit)
    except StructureFileError as exc:
        raise SeedError(f"seed source extxyz: {exc}") from None
    seeds, skipped = [], []
    for i, atoms in enumerate(frames):
        sid = str(atoms.info.get("id", f"{path.stem}:{i}"))
        if not atoms.pbc.all():
            skipped.append((sid, "frame is not periodic in three dimensions"))
            continue
        seeds.append(Seed(id=sid, structure=AseAtomsAdaptor.get_structure(atoms), source="extxyz"))
    return seeds, skipped


def load_materials_project(chemical_system: list[str], api_key: str | None) -> tuple[list[Seed], Skipped]:
    """Query the Materials Project for every phase of the chemical system and its sub-systems."""
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise SeedError("seed source 'materials_project' needs the mp-api package (pip install mp-api)") from exc
    if not api_key:
        raise SeedError("seed source 'materials_project' needs an API key in MP_API_KEY")
    with MPRester(api_key) as mpr:
        docs = mpr.materials.summary.search(chemsys="-".join(chemical_system), fields=["material_id", "structure"])
    return [Seed(id=str(d.material_id), structure=d.structure, source="materials_project") for d in docs], []


def load_builtin(elements: list[str]) -> tuple[list[Seed], Skipped]:
    """Offline seeds shipped by installed packages.

    pymatgen's 288 AFLOW prototypes and its bundled example structures, plus ASE's elemental reference
    state of each element in ``elements`` (diatomic elements as a molecule in a 12 Å box).
    """
    import pymatgen.analysis.prototypes as prototypes
    import pymatgen.util as pmg_util
    from pymatgen.util.provenance import StructureNL

    seeds: list[Seed] = []
    skipped: Skipped = []
    with gzip.open(Path(prototypes.__file__).parent / "aflow_prototypes.json.gz", "rt") as fh:
        for i, entry in enumerate(json.load(fh)):
            seeds.append(Seed(id=f"aflow:{i}", structure=StructureNL.from_dict(entry["snl"]).structure,
                              source="builtin", label=entry.get("tags", {}).get("mineral", "")))
    for f in sorted((Path(pmg_util.__file__).parent / "structures").glob("*.json")):
        try:
            seeds.append(Seed(id=f"pymatgen:{f.stem}", structure=Structure.from_file(f), source="builtin"))
        except Exception as exc:
            skipped.append((f.name, f"{type(exc).__name__}: {exc}"))
    for el in elements:
        seed = ase_reference_state(el)
        if seed is None:
            skipped.append((f"ase:{el}", "ASE has no buildable reference state"))
        else:
            seeds.append(seed)
    return seeds, skipped


def ase_reference_state(element: str) -> Seed | None:
    """ASE's reference state of an element as a Seed, or ``None`` when ASE cannot build it."""
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states
    from pymatgen.io.ase import AseAtomsAdaptor

    state = reference_states[atomic_numbers[element]]
    if state is None:
        return None
    if state["symmetry"] == "diatom":
        box = 12.0
        coords = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, state["d"]]]) / box + 0.5
        structure = Structure(Lattice.cubic(box), [element, element], coords)
        return Seed(id=f"ase:{element}2", structure=structure, source="builtin", label="molecule",
                    relax_cell=False)
    try:
        atoms = bulk(element)
    except Exception:
        return None
    return Seed(id=f"ase:{element}", structure=AseAtomsAdaptor.get_structure(atoms), source="builtin",
                label=state["symmetry"])


def load_source(source: SeedSource, elements: list[str]) -> tuple[list[Seed], Skipped]:
    """Dispatch on ``source.kind`` (builtin | csv | cif_dir | extxyz | materials_project).

    Files and the builtin set are read once per process and content (path, size, modification time): a
    benchmark that starts many campaigns from the same seed files parses them once.
    """
    if source.kind == "materials_project":
        seeds, skipped = load_materials_project(elements, os.environ.get("MP_API_KEY"))
    elif source.kind == "builtin":
        seeds, skipped = _cached_load("builtin", "", None, tuple(elements), None)
    elif source.kind in ("csv", "cif_dir", "extxyz"):
        path = Path(source.path)
        if not path.exists():
            raise SeedError(f"seed source {source.kind}: {path} not found")
        files = sorted(path.glob("*.cif")) if path.is_dir() else [path]  # a folder changes when its files do
        stamp = (sum(f.stat().st_size for f in files), max((f.stat().st_mtime_ns for f in files), default=0),
                 len(files))
        seeds, skipped = _cached_load(source.kind, str(path.resolve()), source.limit, (), stamp)
    else:  # pragma: no cover - the schema restricts kind
        raise SeedError(f"unknown seed source kind {source.kind!r}; allowed: builtin, csv, cif_dir, extxyz, "
                        "materials_project")
    for sid, reason in skipped:
        log.warning("skipped seed %s from %s: %s", sid, source.kind, reason)
    return list(seeds[: source.limit] if source.limit else seeds), list(skipped)


@lru_cache(maxsize=16)
def _cached_load(kind: str, path: str, limit: int | None, elements: tuple[str, ...],
                 stamp: tuple[int, ...] | None) -> tuple[tuple[Seed, ...], tuple[tuple[str, str], ...]]:
    loaders = {"csv": load_mp20_csv, "cif_dir": load_cif_dir, "extxyz": load_extxyz}
    if kind == "builtin":
        seeds, skipped = load_builtin(list(elements))
    else:
        seeds, skipped = loaders[kind](Path(path), limit)
    return tuple(seeds), tuple(skipped)
