"""What a finished round shows its user: the best candidates, the round's numbers and an E_hull plot.

Pure functions over the store (no Prefect): :mod:`flows.artifacts` publishes them as Prefect UI artifacts.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

from pymatgen.core import Composition

from tasks.store import Store
from tasks.store.views import candidate_frame


def num(x: Any, digits: int = 3) -> Any:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def best_candidates(store: Store, cid: str, top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` relaxed new candidates of the campaign so far by MLIP E_hull, with DFT and lab values."""
    threshold = store.config(cid).evaluate.stability_threshold
    df = candidate_frame(store.url, cid)
    df = df[(df["relax_status"] == "converged") & (df["relaxed_match"].fillna("") == "")].head(top)
    extra: dict[str, dict[str, float]] = {}
    for p in store.properties(cid):
        if p.source in ("dft", "lab"):
            extra.setdefault(p.hash, {})[f"{p.source}_{p.name}"] = p.value
    return [{"formula": r.formula, "hash": r.hash, "round": int(r.round), "origin": r.origin,
             "e_above_hull_eV_atom": num(r.e_above_hull), "formation_energy_eV_atom": num(r.formation_energy_per_atom),
             "dft_formation_energy_eV_atom": num(extra.get(r.hash, {}).get("dft_formation_energy_per_atom")),
             "lab": ", ".join(f"{k[4:]}={v:g}" for k, v in extra.get(r.hash, {}).items() if k.startswith("lab_")),
             "status": "stable new" if r.stable_new else "elemental" if len(Composition(r.formula)) == 1
             and r.e_above_hull <= threshold else "above threshold"} for r in df.itertuples()]


def ehull_histogram_png(store: Store, cid: str, r: int) -> bytes:
    """Histogram of MLIP E_hull: this round's candidates against the earlier rounds'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = candidate_frame(store.url, cid)
    df = df[df["e_above_hull"].notna()]
    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    bins = [i * 0.05 for i in range(21)]
    ax.hist([df[df["round"] < r]["e_above_hull"].clip(upper=1.0), df[df["round"] == r]["e_above_hull"].clip(upper=1.0)],
            bins=bins, stacked=True, label=["earlier rounds", f"round {r}"], color=["#bbbbbb", "#1f77b4"])
    ax.set_xlabel("E above hull (eV/atom, MLIP; 1.0 = 1.0 or more)")
    ax.set_ylabel("candidates")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def round_markdown(store: Store, cid: str, r: int) -> str:
    """Markdown summary of round ``r`` with the E_hull histogram embedded as a base64 PNG."""
    s = store.round(cid, r).summary or {}
    dft = s.get("dft")
    lines = [f"# Campaign {cid}, round {r}", "", "| quantity | value |", "|---|---|"]
    notes = ", ".join(f"{k} {v}" for k, v in (s.get("generator_notes") or {}).items())
    rows = [("generated", f"{s.get('generated')} ({notes})" if notes else s.get("generated")),
            ("accepted by the filter", s.get("accepted")),
            ("acquisition (chosen / ranked)", f"{s.get('acquisition', 'all')} ({s.get('chosen')} / {s.get('ranked')})"
             if s.get("ranked") is not None else s.get("acquisition", "all")),
            ("relaxed (converged / total)", f"{s.get('relax_converged')} / {s.get('relaxed')}"),
            ("stable and new", s.get("stable_new")), ("S.U.N. rate", num(s.get("sun_rate"))),
            ("best E_hull (eV/atom)", num(s.get("best_e_above_hull")))]
    if isinstance(dft, dict):
        rows += [("DFT completed / failed / lost", f"{dft.get('completed')} / {dft.get('failed')} / {dft.get('lost')}"),
                 ("MAE E_form MLIP vs DFT (eV/atom)", num(dft.get("mae_formation_energy_per_atom"))),
                 ("DFT selection", (f"{dft.get('acquisition', 'greedy')} on MLIP E_hull + a correction fitted on "
                                    f"{dft.get('correction_fitted_on', 0)} DFT result(s)"))]
    else:
        rows.append(("DFT", dft or "-"))
    lab = s.get("lab") or {}
    rows.append(("lab measurements (new)", f"{lab.get('measurements', 0)} ({lab.get('new', 0)})"))
    if s.get("property_satisfaction"):
        from tasks.properties.targets import describe

        rows.append(("property targets met / with a value", describe(s["property_satisfaction"])))
    lines += [f"| {k} | {v} |" for k, v in rows]
    png = base64.b64encode(ehull_histogram_png(store, cid, r)).decode()
    lines += ["", f"![E_hull histogram](data:image/png;base64,{png})"]
    return "\n".join(lines)
