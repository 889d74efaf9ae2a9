"""Data of the discovery benchmark: reference structures, held-out phases, the campaigns' hull and seed files.

Everything comes from files given on the command line (by default the public data in ``../shared/data``) and
is written once into the benchmark's work folder, so every campaign of a run sees the same files:

* ``heldout.csv``: the held-out phases (MP-20 format plus ``system``, ``formation_energy_per_atom``,
  ``e_above_hull``), computed from the reference data or copied from ``--heldout``;
* ``campaign_hull.csv.gz``: the reference hull table without the held-out phases' rows (what the campaigns
  may know); the full table stays the judge;
* ``templates.csv``: seed templates for every arm (the template files' structures, by default the MP
  structures, with at most ``max_atoms`` sites and at most as many elements as the largest system); the
  held-out phases leave them through ``seeds.exclude``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pymatgen.core import Composition, Structure

from tasks.errors import MatloopError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_DATA = [SHARED / p for p in ("mp_20_subset/mp20_train_val_rows.csv.gz",
                                     "lemat_genbench/baseline_structures/mp.csv.gz",
                                     "lemat_genbench/baseline_structures/alexandria.csv.gz",
                                     "lemat_genbench/baseline_structures/oqmd.csv.gz",
                                     "lemat_genbench/baseline_structures/jarvis_dft_from_aflow_folder.csv.gz")]
DEFAULT_TEMPLATES = DEFAULT_DATA[:2]  # the MP structures: MP-20 rows and the MP sample
DEFAULT_HULL = SHARED / "lemat_genbench/mp20_hulls/mp20_mlip_energies_merged.csv.gz"
DEFAULT_ELEMENTAL = SHARED / "matbench_discovery/2023-02-07-mp-elemental-reference-entries.json.gz"
FORMULA_COLUMNS = ("pretty_formula", "formula", "composition")


def elements_of(formula: str) -> frozenset[str]:
    return frozenset(el.symbol for el in Composition(formula).elements)


def read_rows(path: Path) -> pd.DataFrame:
    """An MP-20-format CSV as ``id, formula, elements, nsites, cif, source`` (formula from its column, or the
    CIF when there is none; ``nsites`` NaN when the file does not say)."""
    df = pd.read_csv(path)
    if "cif" not in df.columns:
        raise SystemExit(f"error: {path} has no 'cif' column (an MP-20-format CSV is needed)")
    ids = df["material_id"].astype(str) if "material_id" in df.columns else pd.Series(
        [f"{Path(path).name}:{i}" for i in range(len(df))])
    col = next((c for c in FORMULA_COLUMNS if c in df.columns), None)
    formulas = (list(df[col].astype(str)) if col else
                [Structure.from_str(c, fmt="cif").composition.reduced_formula for c in df["cif"]])
    nsites = next((df[c] for c in ("nsites_parsed", "nsites", "num_atoms") if c in df.columns), None)
    return pd.DataFrame({"id": list(ids), "formula": formulas, "elements": [elements_of(f) for f in formulas],
                         "nsites": list(nsites) if nsites is not None else float("nan"), "cif": list(df["cif"]),
                         "source": Path(path).name})


def structures_of(rows: pd.DataFrame) -> list[tuple[str, Structure]]:
    return [(i, Structure.from_str(c, fmt="cif")) for i, c in zip(rows["id"], rows["cif"])]


@dataclass
class BenchmarkData:
    """What the harness prepared: the files campaigns read and the judge's inputs per system."""

    workdir: Path
    heldout: pd.DataFrame  # id, system, formula, formation_energy_per_atom, e_above_hull, cif
    reference: pd.DataFrame  # every reference row (id, formula, elements, nsites, cif, source)
    hull_table: Path  # the full reference hull (the judge)
    elemental: Path

    @property
    def heldout_file(self) -> Path:
        return self.workdir / "heldout.csv"

    @property
    def campaign_hull(self) -> Path:
        return self.workdir / "campaign_hull.csv.gz"

    @property
    def templates(self) -> Path:
        return self.workdir / "templates.csv"

    def heldout_of(self, system: str) -> list[tuple[str, Structure]]:
        return structures_of(self.heldout[self.heldout["system"] == system])

    def reference_of(self, system: str) -> list[tuple[str, Structure]]:
        """Every reference structure whose elements lie in ``system`` (held-out phases included)."""
        elements = frozenset(system.split("-"))
        return structures_of(self.reference[[e <= elements for e in self.reference["elements"]]])


def prepare(workdir: Path, systems: Sequence[str], data: Sequence[Path], hull_table: Path, elemental: Path,
            heldout: Path | None = None, templates: Sequence[Path] = (), max_atoms: int = 20,
            tol: float = 1e-3) -> BenchmarkData:
    """Write the held-out, hull and template files into ``workdir`` and return the judge's inputs.

    The files are rewritten only when their content changes, so a resumed run reads the same files.
    """
    for path in [*data, hull_table, elemental, *([heldout] if heldout else [])]:
        if not Path(path).is_file():
            raise SystemExit(f"error: {path} not found (see benchmarks/README.md for the data the benchmark uses)")
    for path in templates:
        if Path(path) not in [Path(p) for p in data]:
            raise SystemExit(f"error: template file {path} must also be one of the reference data files")
    workdir.mkdir(parents=True, exist_ok=True)
    reference = pd.concat([read_rows(Path(p)) for p in data], ignore_index=True)
    table = pd.read_csv(hull_table)
    col = next((c for c in FORMULA_COLUMNS if c in table.columns), None)
    if col is None or not {"material_id", "formation_energy_per_atom"} <= set(table.columns):
        raise SystemExit(f"error: {hull_table} needs material_id, a formula column ({', '.join(FORMULA_COLUMNS)}) "
                         f"and formation_energy_per_atom; it has {list(table.columns)}")
    table["material_id"] = table["material_id"].astype(str)
    try:
        held = (read_heldout(heldout, systems) if heldout
                else find_heldout(reference, table, Path(hull_table), systems, tol))
    except MatloopError as exc:
        raise SystemExit(f"error: {exc}") from None
    out = BenchmarkData(workdir, held, reference, Path(hull_table), Path(elemental))
    hidden = heldout_ids(held, reference)
    unknown = sorted(set(held["id"]) - set(table["material_id"]))
    if unknown:
        print(f"note: held-out phase(s) {unknown} have no row in {Path(hull_table).name}: the campaigns' hull could "
              "not be stripped of their energies (structures matched by other ids are removed)", flush=True)
    kept = table[~table["material_id"].isin(hidden)]
    most = max(len(s.split("-")) for s in systems)
    pool = reference[reference["source"].isin({Path(p).name for p in (templates or data)})]
    small = pool[[len(e) <= most and not n > max_atoms for e, n in zip(pool["elements"], pool["nsites"])]]
    files = {out.heldout_file: render(held.rename(columns={"id": "material_id"}), out.heldout_file),
             out.campaign_hull: render(kept[["material_id", col, "formation_energy_per_atom"]], out.campaign_hull),
             out.templates: render(small[["id", "formula", "cif"]].rename(columns={"id": "material_id"}), out.templates)}
    record_inputs(workdir, {path.name: hashlib.sha256(data).hexdigest() for path, data in files.items()})
    for path, data in files.items():
        if not path.is_file() or path.read_bytes() != data:  # untouched when the same: caches keyed on mtime hold
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
    return out


def record_inputs(workdir: Path, digests: dict[str, str]) -> None:
    """One work folder, one benchmark: the files and checkpoints its campaigns were run with are recorded in
    ``inputs.json``, and inputs that differ are refused before anything is written (campaigns are found again
    by name, and their names hold the files' paths, not their content)."""
    path = workdir / "inputs.json"
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    changed = sorted(k for k in digests.keys() & recorded.keys() if digests[k] != recorded[k])
    if changed:
        raise SystemExit(f"error: {', '.join(changed)} differ from what the campaigns in {workdir} were run with "
                         "(other systems, data, held-out file or a retrained checkpoint): use another --workdir, or "
                         "delete that folder to start over")
    path.write_text(json.dumps({**recorded, **digests}, indent=2))


def heldout_ids(held: pd.DataFrame, reference: pd.DataFrame) -> set[str]:
    """The held-out ids and the ids of every reference structure that StructureMatcher matches to a held-out
    phase (the same phase under another id): their rows leave the campaigns' hull."""
    from conf.schema import MatcherConfig
    from tasks.metrics.matching import MatchIndex

    index = MatchIndex(MatcherConfig())
    for i, s in structures_of(held):
        index.add(i, s)
    formulas = set(held["formula"])
    same = reference[reference["formula"].map(lambda f: Composition(f).reduced_formula).isin(formulas)]
    return set(held["id"].astype(str)) | {i for i, s in structures_of(same) if index.find(s) is not None}


def find_heldout(reference: pd.DataFrame, table: pd.DataFrame, hull_table: Path, systems: Sequence[str],
                 tol: float) -> pd.DataFrame:
    """The stable phases (E_hull <= ``tol``, eV/atom) of each system among the reference rows that the hull
    table has energies for."""
    from tasks.metrics.discovery import held_out_phases
    from tasks.metrics.hull import load_reference_hull

    energies = dict(zip(table["material_id"].astype(str), table["formation_energy_per_atom"]))
    wanted = {frozenset(s.split("-")) for s in systems}
    rows = reference[[e in wanted and i in energies for e, i in zip(reference["elements"], reference["id"])]]
    found = held_out_phases(pd.DataFrame({"id": list(rows["id"]), "structure": [s for _, s in structures_of(rows)]}),
                            energies, load_reference_hull(hull_table), [s.split("-") for s in systems], tol)
    found["cif"] = [s.to(fmt="cif") for s in found.pop("structure")]
    return found


def read_heldout(path: Path, systems: Sequence[str]) -> pd.DataFrame:
    """A user's held-out file (MP-20 format; a ``system`` column, or the system is each structure's elements)."""
    df = pd.read_csv(path)
    rows = read_rows(path)
    out = pd.DataFrame({"id": rows["id"], "formula": rows["formula"], "cif": rows["cif"],
                        "system": [_match_system(s, systems) for s in (
                            df["system"] if "system" in df.columns else ["-".join(sorted(e)) for e in rows["elements"]])]})
    for col in ("formation_energy_per_atom", "e_above_hull"):
        out[col] = df[col] if col in df.columns else float("nan")
    return out


def _match_system(system: str, systems: Sequence[str]) -> str:
    """The spelling of ``system`` used on the command line (element order may differ in a held-out file)."""
    for s in systems:
        if frozenset(s.split("-")) == frozenset(str(system).split("-")):
            return s
    return str(system)


def render(df: pd.DataFrame, path: Path) -> bytes:
    """The bytes of ``df`` as CSV, gzip-compressed (reproducibly) when ``path`` ends in ``.gz``."""
    text = df.to_csv(index=False).encode()
    return gzip.compress(text, mtime=0) if path.name.endswith(".gz") else text
