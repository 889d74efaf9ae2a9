"""The files a materials scientist opens after a campaign: ``<campaign_dir>/report/``.

``report.md`` (the round table, the best new candidates, links to the rest), ``candidates.csv`` (every candidate
with units in its headers, plus volume, density, space group and lattice parameters of its relaxed cell),
``hull.png`` (the campaign's convex hull with its candidates, pymatgen's plotter; systems of 2-4 elements),
``ehull_round_<r>.png`` (each round's MLIP E_hull histogram) and ``best/*.cif`` (the best new candidates, relaxed).
Pure functions over the store (no Prefect): the campaign flow writes them at its end, ``matloop report`` on demand.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure

from tasks.candidate import structure_from_json
from tasks.round_report import best_candidates, ehull_histogram_png, num
from tasks.store import Store
from tasks.store.views import candidate_frame, relaxed_structure_json

log = logging.getLogger(__name__)

UNITS = {"e_above_hull": "e_above_hull (eV/atom)", "formation_energy_per_atom": "formation_energy (eV/atom)",
         "energy_per_atom": "energy (eV/atom)", "predicted_e_above_hull": "predicted_e_above_hull (eV/atom)",
         "sigma": "predicted_sigma (eV/atom)"}
CELL_COLUMNS = ["volume (Å^3)", "density (g/cm^3)", "spacegroup", "spacegroup_number", "a (Å)", "b (Å)", "c (Å)",
                "alpha (°)", "beta (°)", "gamma (°)"]


def cell_properties(structure: Structure, symprec: float = 0.1) -> dict:
    """Volume, density, space group (spglib at ``symprec`` Å) and lattice parameters of one cell."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        symbol, number = sga.get_space_group_symbol(), sga.get_space_group_number()
    except Exception:  # spglib gives up on some distorted cells
        symbol, number = "", None
    lat = structure.lattice
    return dict(zip(CELL_COLUMNS, [structure.volume, float(structure.density), symbol, number, lat.a, lat.b, lat.c,
                                   lat.alpha, lat.beta, lat.gamma]))


def candidate_table(store: Store, cid: str, include_unrelaxed: bool = True) -> pd.DataFrame:
    """Every candidate (or only those with MLIP properties) with units in the headers and the cell's geometry
    (the relaxed cell where the relaxation converged, else the proposed one; ``cell`` says which)."""
    df = candidate_frame(store.url, cid)
    if not include_unrelaxed:
        df = df[df["e_above_hull"].notna()]
    relaxed = relaxed_structure_json(store.url, cid, list(df["hash"]))
    proposed = store.candidate_structures(cid, [h for h in df["hash"] if h not in relaxed])
    cells = []
    for h in df["hash"]:
        structure = structure_from_json(relaxed[h]) if h in relaxed else proposed[h]
        cells.append({"cell": "relaxed" if h in relaxed else "proposed", **cell_properties(structure)})
    table = pd.concat([df.reset_index(drop=True), pd.DataFrame(cells, columns=["cell", *CELL_COLUMNS])], axis=1)
    return table.rename(columns=UNITS)


def hull_png(store: Store, cid: str, show_unstable: float = 0.2) -> bytes | None:
    """The campaign's formation-energy hull (the reference table's where configured) with every converged
    candidate up to ``show_unstable`` eV/atom above it; None for a system pymatgen cannot draw (5+ elements)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pymatgen.analysis.phase_diagram import PDEntry, PDPlotter, PhaseDiagram
    from pymatgen.core import Composition

    from tasks.acquire import campaign_training_set

    cfg = store.config(cid)
    system = frozenset(cfg.target.chemical_system)
    if not 2 <= len(system) <= 4:
        return None
    hull = campaign_training_set(store, cid, structures=False).hull
    entries = list(hull.phase_diagram(system).stable_entries)
    df = candidate_frame(store.url, cid)
    for row in df[df["formation_energy_per_atom"].notna()].itertuples():
        comp = Composition(row.formula)
        if set(map(str, comp.elements)) <= system and not math.isnan(row.formation_energy_per_atom):
            entries.append(PDEntry(comp, row.formation_energy_per_atom * comp.num_atoms, name=row.formula))
    plot = PDPlotter(PhaseDiagram(entries), show_unstable=show_unstable, backend="matplotlib").get_plot()
    fig = plot.get_figure() if hasattr(plot, "get_figure") else plt.gcf()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close("all")
    return buf.getvalue()


def _markdown_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(none yet)"]
    keys = list(rows[0])
    return (["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            + ["| " + " | ".join("-" if r[k] is None else str(r[k]) for k in keys) + " |" for r in rows])


def write_campaign_report(store: Store, cid: str, out: Path | None = None, top: int = 10) -> Path:
    """Write the report files to ``out`` (default ``<campaign_dir>/report``); returns the markdown file's path.
    Files are written to a temporary name and moved into place, so a reader never sees half of one."""
    campaign = store.campaign(cid)
    out = Path(out) if out is not None else Path(campaign.campaign_dir) / "report"
    (out / "best").mkdir(parents=True, exist_ok=True)

    def put(name: str, data: bytes | str) -> None:
        tmp = out / f".{name.replace('/', '_')}.tmp"
        tmp.write_bytes(data) if isinstance(data, bytes) else tmp.write_text(data)
        tmp.replace(out / name)

    table = candidate_table(store, cid)
    put("candidates.csv", table.to_csv(index=False))
    best = best_candidates(store, cid, top)
    relaxed = relaxed_structure_json(store.url, cid, [b["hash"] for b in best])
    for i, b in enumerate(best, start=1):
        put(f"best/{i:03d}_{b['formula']}_{b['hash']}.cif", structure_from_json(relaxed[b["hash"]]).to(fmt="cif"))
    rounds = store.rounds(cid)
    for r in rounds:
        if r.status == "completed":
            put(f"ehull_round_{r.index}.png", ehull_histogram_png(store, cid, r.index))
    try:
        png = hull_png(store, cid)
    except Exception as exc:  # a report without its hull plot beats no report; say why
        log.warning("campaign %s: no hull plot (%s: %s)", cid, type(exc).__name__, exc)
        png = None
    if png is not None:
        put("hull.png", png)
    lines = [f"# Campaign {cid} ({campaign.name}): {campaign.status}", "",
             f"Target {'-'.join(store.config(cid).target.chemical_system)}; MLIP {campaign.mlip or '-'}; "
             f"{len(table)} candidates, {int((table['relax_status'] == 'converged').sum())} relaxed, "
             f"{int(table['stable_new'].sum())} stable and new (E_hull at or below "
             f"{store.config(cid).evaluate.stability_threshold} eV/atom, MLIP).", "", "## Rounds", ""]
    lines += _markdown_table([{"round": r.index, "status": r.status, "generated": r.summary.get("generated"),
                               "accepted": r.summary.get("accepted"), "relaxed": r.summary.get("relaxed"),
                               "converged": r.summary.get("relax_converged"),
                               "stable new": r.summary.get("stable_new"),
                               "best E_hull (eV/atom)": num(r.summary.get("best_e_above_hull"))} for r in rounds])
    lines += ["", "## Best new candidates (CIFs in `best/`, every candidate in `candidates.csv`)", ""]
    lines += _markdown_table(best)
    if png is not None:
        lines += ["", "## Convex hull (formation energy, eV/atom)", "", "![hull](hull.png)"]
    lines += ["", "## E_hull per round", ""] + [f"![round {r.index}](ehull_round_{r.index}.png)" for r in rounds
                                                  if r.status == "completed"]
    put("report.md", "\n".join(lines) + "\n")
    return out / "report.md"
