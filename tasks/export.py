"""Export a campaign's candidates as CIF files, one extended-XYZ file or a CSV table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tasks.candidate import structure_from_json
from tasks.store import Store
from tasks.store.views import candidate_frame, relaxed_structure_json

FORMATS = ("cif", "extxyz", "csv")


def select_candidates(store: Store, cid: str, top: int | None, include_unrelaxed: bool) -> pd.DataFrame:
    """Candidates sorted by E_hull; by default only those with MLIP properties."""
    df = candidate_frame(store.url, cid)
    if not include_unrelaxed:
        df = df[df["e_above_hull"].notna()]
    return df.head(top) if top else df


def extxyz_info(row: dict) -> dict:
    """A candidate row as extended-XYZ frame info: no empty value (written as ``key=``, ASE would read the next
    pair as its value), no missing number, numpy scalars as Python ones."""
    info = {}
    for key, value in row.items():
        if key == "Index" or value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
            continue
        info[key] = value.item() if hasattr(value, "item") else value
    return info


def export_candidates(store: Store, cid: str, fmt: str, out: Path, top: int | None = None,
                      include_unrelaxed: bool = False) -> list[Path]:
    """Write candidates to ``out`` in ``fmt`` (one of :data:`FORMATS`); relaxed structures where available.

    Returns the paths written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    store.campaign(cid)  # unknown campaign -> StoreError before anything is written
    df = select_candidates(store, cid, top, include_unrelaxed)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":  # units in the headers, the cell's geometry (tasks/campaign_report.py)
        from tasks.campaign_report import candidate_table

        table = candidate_table(store, cid, include_unrelaxed)
        path = out / f"{cid}_candidates.csv"
        table.head(top).to_csv(path, index=False) if top else table.to_csv(path, index=False)
        return [path]
    relaxed = relaxed_structure_json(store.url, cid, list(df["hash"]))
    initial = store.candidate_structures(cid, list(df["hash"]))
    structures = {h: structure_from_json(relaxed[h]) if h in relaxed else initial[h] for h in df["hash"]}
    if fmt == "cif":
        paths = []
        for rank, row in enumerate(df.itertuples(), start=1):
            path = out / f"{rank:03d}_{row.formula}_{row.hash}.cif"
            structures[row.hash].to(filename=str(path), fmt="cif")
            paths.append(path)
        return paths
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for row in df.itertuples():
        atoms = AseAtomsAdaptor.get_atoms(structures[row.hash])
        atoms.info.update(extxyz_info(row._asdict()))
        atoms.info["relaxed"] = row.hash in relaxed
        frames.append(atoms)
    path = out / f"{cid}_candidates.extxyz"
    write(path, frames, format="extxyz")
    return [path]
