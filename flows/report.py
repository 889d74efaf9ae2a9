"""Rich tables of campaigns, rounds and candidates for the CLI."""

from __future__ import annotations

import math

from rich.markup import escape
from rich.table import Table

from conf.predictor import UNITS
from tasks.properties.targets import describe
from tasks.store import Store
from tasks.store.views import best_candidates, campaign_summary


def _missing(value: object) -> bool:
    """None or NaN (what pandas' isna says of a scalar; pandas itself is not imported by `matloop status`)."""
    if value is None:
        return True
    try:
        return math.isnan(value)
    except TypeError:  # a text or other non-number: present
        return False


def _fmt(x: object, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def shown_status(store: Store, campaign) -> str:
    """The stored status, except that a ``running`` campaign whose runner holds no live lease (killed without
    cleanup) is ``interrupted``: `matloop run --resume` continues it."""
    from tasks.lease import live_lease

    if campaign.status == "running" and live_lease(store, campaign.id) is None:
        return "interrupted"
    return campaign.status


def campaign_table(url: str) -> Table:
    store = Store(url)
    table = Table(title=f"campaigns in {store.url}")
    for col in ("id", "name", "status", "rounds", "candidates", "relaxed", "stable new", "best new E_hull (eV/atom)",
                "MLIP", "created"):
        table.add_column(col)
    for c in store.campaigns():
        rounds = store.rounds(c.id)
        n = campaign_summary(url, c.id, c.config["evaluate"]["stability_threshold"])
        done = sum(r.status == "completed" for r in rounds)
        table.add_row(c.id, escape(c.name), shown_status(store, c), f"{done}/{len(rounds)}", str(n["candidates"]),
                      str(n["converged"]), str(n["stable_new"]), _fmt(n["best_new_e_above_hull"]), c.mlip or "-",
                      c.created_at.strftime("%Y-%m-%d %H:%M"))
    return table


def _dft_cell(dft) -> str:
    if not isinstance(dft, dict):
        return "skipped" if dft else "-"
    mae = dft.get("mae_formation_energy_per_atom")
    return f"{dft.get('completed', 0)}/{dft.get('calculations', 0)}" + (f" ({mae:.3f})" if mae is not None else "")


def rounds_table(url: str, cid: str) -> Table:
    store = Store(url)
    c = store.campaign(cid)
    budget = c.config.get("budget", {}).get("relaxations")
    spent = f"; relaxations {store.relaxation_count(cid)} of {budget}" if budget else ""
    hull = c.config.get("evaluate", {}).get("reference_hull")
    hull = f"reference hull {hull.rsplit('/', 1)[-1]}" if hull else "self-consistent hull"
    table = Table(title=escape(f"campaign {cid} ({c.name}): {shown_status(store, c)}; MLIP {c.mlip or '-'}; {hull}{spent}"))
    rounds = store.rounds(cid)
    targets = any((r.summary or {}).get("property_satisfaction") for r in rounds)
    for col in ("round", "status", "generated", "valid (CDVAE)", "accepted", "rejected (by check)", "relaxed ok",
                "stable new", "S.U.N.", "best E_hull", "DFT ok/n (MAE E_f)", "wall (s)") + (
                    ("targets met/with value",) if targets else ()):
        table.add_column(col)
    for r in rounds:
        s = r.summary or {}
        wall = sum(t.get("wall_s", 0.0) for t in s.get("timings", {}).values())
        rej = ", ".join(f"{k} {v}" for k, v in s.get("rejections_by_check", {}).items())
        table.add_row(str(r.index), r.status, _generated_cell(s), _fmt(s.get("cdvae_validity"), 2),
                      _fmt(s.get("accepted")),
                      f"{_fmt(s.get('rejected'))} ({rej})" if rej else _fmt(s.get("rejected")),
                      f"{_fmt(s.get('relax_converged'))}/{_fmt(s.get('relaxed'))}", _fmt(s.get("stable_new")),
                      _fmt(s.get("sun_rate"), 2),
                      _fmt(s.get("best_e_above_hull")), _dft_cell(s.get("dft")), _fmt(wall, 1) if wall else "-",
                      *((describe(s.get("property_satisfaction")),) if targets else ()))
    return table


def _generated_cell(s: dict) -> str:
    """Proposals of the round and, when the generator widened or exhausted its space, what it did."""
    notes = s.get("generator_notes") or {}
    extra = [f"threshold {notes['threshold_widened_to']:g}"] if "threshold_widened_to" in notes else []
    extra += ["exhausted"] if notes.get("exhausted") else []
    return f"{_fmt(s.get('generated'))} ({', '.join(extra)})" if extra else _fmt(s.get("generated"))


def candidates_table(url: str, cid: str, top: int, include_known: bool = False) -> Table:
    """Best relaxed candidates by E_hull; those that relaxed into a known phase or an earlier candidate are
    left out unless ``include_known``."""
    Store(url).campaign(cid)
    relaxed, total = best_candidates(url, cid, top, include_known)
    what = "relaxed" if include_known else "new relaxed"
    table = Table(title=f"best {len(relaxed)} {what} of {total} candidates of campaign {cid}")
    targets = [c for c in relaxed.columns if f"{c}_source" in relaxed.columns]  # band_gap: value, sigma, source
    for col in ("#", "formula", "hash", "round", "from", "E_hull (eV/atom)", "predicted ± σ (eV/atom)",
                "E_form (eV/atom)", "E (eV/atom)", "sites", "relaxed into", "stable new",
                *(f"{name} ({UNITS.get(name, '')})" for name in targets)):
        table.add_column(col, justify="right" if col.startswith(("E", "#", "round", "sites")) else "left")
    for i, row in enumerate(relaxed.itertuples(), start=1):
        predicted = "-" if _missing(row.sigma) else f"{row.predicted_e_above_hull:.3f} ± {row.sigma:.3f}"
        table.add_row(str(i), row.formula, row.hash, str(row.round), row.origin, _fmt(row.e_above_hull),
                      predicted, _fmt(row.formation_energy_per_atom), _fmt(row.energy_per_atom), str(row.nsites),
                      row.relaxed_match or "-", "yes" if row.stable_new else "no",
                      *(_target_cell(row, name) for name in targets))
    return table


def _target_cell(row: tuple, name: str) -> str:
    """``2.31 ± 0.42 (predictor)``, ``4.25 (dft)`` or ``-`` (``row``: a candidate frame's named tuple)."""
    value, sigma, source = (getattr(row, c) for c in (name, f"{name}_sigma", f"{name}_source"))
    if _missing(value):
        return "-"
    spread = f" ± {sigma:.2f}" if sigma is not None and not _missing(sigma) else ""
    return f"{value:.2f}{spread} ({source})"
