"""Read generated or reference structures (MP-20-format CSV, CIF folder, extxyz) into one table.

Every row keeps its id, the parsed structure (or ``None`` with the parse error) and any property columns
the file carries (CSV columns, extxyz ``info`` keys), so a bad entry becomes a per-structure verdict
instead of a crash.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pymatgen.core import Structure

from tasks.errors import MatloopError, StructureFileError

FORMATS = "an MP-20-format CSV (.csv/.csv.gz with a 'cif' column), a folder of .cif files, or .extxyz"


def _parse_cif(text: str) -> tuple[Structure | None, str]:
    try:
        return Structure.from_str(text, fmt="cif"), ""
    except Exception as exc:  # pymatgen raises many types on bad CIFs
        return None, f"unparseable CIF: {type(exc).__name__}: {exc}"


def read_extxyz(path: Path, limit: int | None = None) -> list:
    """The frames (ase.Atoms) of an extended-XYZ file; a file ASE cannot parse is a :class:`StructureFileError`
    naming it (truncated frames, garbage)."""
    from ase.io import read

    try:
        return list(read(path, index=":" if limit is None else f":{limit}", format="extxyz"))
    except Exception as exc:  # ASE raises XYZError, ValueError, IndexError, StopIteration... on bad files
        raise StructureFileError(f"{path} is not a readable extended-XYZ file ({type(exc).__name__}: {exc})") \
            from None


def load_structure_table(path: Path, limit: int | None = None) -> pd.DataFrame:
    """Columns ``id``, ``structure`` (Structure or None), ``error`` ('' when parsed), then properties."""
    path = Path(path)
    if path.is_dir():
        rows = []
        for f in sorted(path.glob("*.cif"))[:limit]:
            s, err = _parse_cif(f.read_text(errors="replace"))
            rows.append({"id": f.stem, "structure": s, "error": err})
        if not rows:
            raise MatloopError(f"{path} holds no .cif files; expected {FORMATS}")
        return pd.DataFrame(rows)
    if not path.is_file():
        raise MatloopError(f"{path} not found; expected {FORMATS}")
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        try:
            df = pd.read_csv(path, nrows=limit)
        except (ValueError, UnicodeDecodeError, OSError, EOFError) as exc:  # pandas' ParserError is a ValueError
            raise StructureFileError(f"{path} is not a readable CSV file: {exc}") from None
        if "cif" not in df.columns:
            raise MatloopError(f"{path} has no 'cif' column; expected {FORMATS}")
        parsed = [_parse_cif(c) if isinstance(c, str) else (None, "empty CIF") for c in df["cif"]]
        ids = df["material_id"].astype(str) if "material_id" in df.columns else df.index.astype(str)
        props = df.drop(columns=[c for c in ("cif", "material_id", "Unnamed: 0") if c in df.columns])
        out = pd.DataFrame({"id": list(ids), "structure": [p[0] for p in parsed], "error": [p[1] for p in parsed]})
        return pd.concat([out, props.reset_index(drop=True)], axis=1)
    if name.endswith((".extxyz", ".xyz")):
        from pymatgen.io.ase import AseAtomsAdaptor

        rows = []
        for i, atoms in enumerate(read_extxyz(path, limit)):
            info = {k: v for k, v in atoms.info.items() if isinstance(v, (int, float, str, bool))}
            if atoms.pbc.all():
                s, err = AseAtomsAdaptor.get_structure(atoms), ""
            else:
                s, err = None, "frame is not periodic in three dimensions"
            if atoms.calc is not None and "energy" in atoms.calc.results:
                info.setdefault("energy", float(atoms.calc.results["energy"]))
            rows.append({"id": str(info.pop("id", i)), "structure": s, "error": err, **info})
        return pd.DataFrame(rows)
    raise MatloopError(f"cannot read {path}; expected {FORMATS}")
