"""Figures of an evaluation: property histograms against the reference, and a convex hull."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.metrics.distributions import density, n_elements


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def property_histograms(df: pd.DataFrame, references: pd.DataFrame | None, path: Path) -> Path:
    """Histograms of density, number of elements and shared numeric properties: generated vs reference."""
    plt = _pyplot()
    ref = references[references["structure"].notna()] if references is not None else None
    panels = [("density (g/cm³)", df.loc[df["valid"], "density"],
               None if ref is None else [density(s) for s in ref["structure"]]),
              ("number of elements", df.loc[df["valid"], "n_elements"],
               None if ref is None else [n_elements(s) for s in ref["structure"]])]
    for col in ("formation_energy_per_atom", "e_above_hull", "band_gap"):
        gen = df[col].dropna() if col in df.columns else pd.Series(dtype=float)
        rvals = ref[col].dropna() if ref is not None and col in ref.columns else None
        if len(gen) or (rvals is not None and len(rvals)):
            panels.append((col, gen, rvals))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (title, gen, rvals) in zip(np.atleast_1d(axes), panels):
        data = [np.asarray(x, dtype=float) for x in (gen, rvals) if x is not None and len(x)]
        lo = min(d.min() for d in data) if data else 0.0
        hi = max(d.max() for d in data) if data else 1.0
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
        if len(gen):
            ax.hist(np.asarray(gen, dtype=float), bins=bins, density=True, alpha=0.6, label="generated")
        if rvals is not None and len(rvals):
            ax.hist(np.asarray(rvals, dtype=float), bins=bins, density=True, alpha=0.6, label="reference")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def hull_plot(df: pd.DataFrame, hull, path: Path) -> Path | None:
    """pymatgen's phase-diagram plot of the most common chemical system among the generated structures
    that have a formation energy, with those structures added (unstable ones shown up to 0.3 eV/atom)."""
    from pymatgen.analysis.phase_diagram import PDEntry, PDPlotter, PhaseDiagram

    with_e = df[df["formation_energy_per_atom"].notna()]
    systems = Counter(frozenset(el.symbol for el in s.composition.elements) for s in with_e["structure"])
    systems = {k: v for k, v in systems.items() if 2 <= len(k) <= 4}
    if not systems or hull is None:
        return None
    system = max(systems, key=lambda k: (systems[k], len(k) == 3, -len(k)))  # most samples; ternary reads best
    base = hull.phase_diagram(system)
    generated = [PDEntry(s.composition, ef * s.composition.num_atoms, name=f"new {s.composition.reduced_formula}")
                 for s, ef in zip(with_e["structure"], with_e["formation_energy_per_atom"])
                 if frozenset(el.symbol for el in s.composition.elements) <= system]
    pd_all = PhaseDiagram(list(base.all_entries) + generated)
    plt = _pyplot()
    ax = PDPlotter(pd_all, show_unstable=0.3, backend="matplotlib").get_plot()
    fig = ax.get_figure() if hasattr(ax, "get_figure") else plt.gcf()
    fig.suptitle(f"{'-'.join(sorted(system))}: {len(generated)} generated structures")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
