"""The discovery benchmark's numbers: each arm judged against held-out truth, aggregated over seeds, the
enhancement of learning on over learning off, the JSON, the discovery-curve PNG and the judged relaxations."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.campaign import git_commit
from benchmarks.discovery_data import ROOT, BenchmarkData

COLORS = {"substitution": "#1f77b4", "random": "#7f7f7f", "diffusion": "#d62728", "gan": "#2ca02c"}


def spent_relaxations(store, cid: str, budget: int):
    """The campaign's relaxations in the order its budget was spent (round, then hash), at most ``budget``."""
    from tasks.candidate import structure_from_json
    from tasks.context import relax_context
    from tasks.metrics.discovery import Relaxation

    _, spec, shash = relax_context(store, cid)
    pairs = sorted(store.own_relaxations(cid, spec.identity, shash),
                   key=lambda cr: (cr[0].round_index, cr[0].hash))[:budget]
    return [Relaxation(hash=c.hash, round=c.round_index, formula=c.formula, converged=r.status == "converged",
                       energy_per_atom=r.energy_per_atom, relaxed_match=c.relaxed_match or "",
                       structure=structure_from_json(r.final_structure) if r.final_structure else None)
            for c, r in pairs]


def judge_arms(arms: list[tuple], configs: dict, runs: dict, data: BenchmarkData, budget: int) -> list[dict]:
    """One record per arm: its campaign, the judged relaxations and the curve metrics."""
    from tasks.errors import EvaluationError
    from tasks.metrics.discovery import HIT_KINDS, DiscoveryJudge, cumulative, curve_metrics
    from tasks.metrics.hull import load_elemental_references, load_reference_hull
    from tasks.store import Store

    hull, elemental = load_reference_hull(data.hull_table), load_elemental_references(data.elemental)
    first = {arm[0]: configs[arm] for arm in reversed(arms)}  # every arm of a system is judged by the same rules
    judges = {s: DiscoveryJudge(data.heldout_of(s), data.reference_of(s), hull, elemental,
                                threshold=cfg.evaluate.stability_threshold, matcher=cfg.filter.matcher)
              for s, cfg in first.items()}
    out = []
    for arm in arms:
        system, generator, learning, seed = arm
        cid, _, error = runs[arm]
        record = {"system": system, "generator": generator, "learning": learning, "seed": seed, "campaign": cid,
                  "name": configs[arm].name, "error": error}
        if cid is not None:
            store = Store(configs[arm].store_url())
            spent = spent_relaxations(store, cid, budget)
            try:
                table = judges[system].judge(spent)
            except EvaluationError as exc:  # reported with the arm; the other arms are still written
                record["error"] = f"judge: {exc}"
                out.append(record)
                continue
            kinds = list(table["kind"])
            table["cif"] = [r.structure.to(fmt="cif") if k in HIT_KINDS else "" for r, k in zip(spent, kinds)]
            rounds = store.rounds(cid)
            record.update(curve_metrics(kinds, budget), status=store.campaign(cid).status,
                          sun_new_composition=int(((table["kind"] == "sun") & table["new_composition"]).sum()),
                          mlip=store.campaign(cid).mlip, rounds_run=sum(r.status == "completed" for r in rounds),
                          wall_s=sum(t.get("wall_s", 0.0) for r in rounds
                                     for t in (r.summary or {}).get("timings", {}).values()),
                          curve_hits=cumulative(kinds, budget).tolist(),
                          relaxations=table.assign(**{k: v for k, v in zip(("system", "generator", "learning", "seed"),
                                                                            arm)}))
        out.append(record)
    return out


def aggregate(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Mean and spread over seeds per (system, generator, learning), totals over every system and seed per
    (generator, learning) (system "all": counts summed, hits per 100 relaxations pooled, the spread over arms),
    and learning on / off enhancement factors per (system, generator) and per generator over all systems."""
    from tasks.metrics.discovery import enhancement

    ok = pd.DataFrame([{k: v for k, v in r.items() if k not in ("relaxations", "curve_hits")}
                       for r in records if r.get("spent") is not None])
    if ok.empty:
        return [], []
    summary = []
    for (system, gen, lrn), g in ok.groupby(["system", "generator", "learning"], sort=False):
        row = {"system": system, "generator": gen, "learning": lrn, "seeds": len(g)}
        for col in ("spent", "rediscovery", "sun", "sun_new_composition", "hits", "hits_per_100", "auc_hits",
                    "elemental", "failed"):
            row[col] = float(g[col].mean())
            row[f"{col}_std"] = float(g[col].std(ddof=1)) if len(g) > 1 else 0.0
        summary.append(row)
    for (gen, lrn), g in ok.groupby(["generator", "learning"], sort=False):  # every system and seed pooled
        totals = {col: float(g[col].sum()) for col in ("spent", "rediscovery", "sun", "sun_new_composition", "hits",
                                                       "elemental", "failed")}
        summary.append({"system": "all", "generator": gen, "learning": lrn, "arms": int(len(g)), **totals,
                        "hits_per_100": 100.0 * totals["hits"] / totals["spent"] if totals["spent"] else 0.0,
                        "hits_per_100_std": float(g["hits_per_100"].std(ddof=1)) if len(g) > 1 else 0.0,
                        "auc_hits": float(g["auc_hits"].mean())})
    factors = []
    for keys, g in ok.groupby(["system", "generator"], sort=False):
        factors.append({"system": keys[0], "generator": keys[1], **_enhance(g, enhancement)})
    for gen, g in ok.groupby("generator", sort=False):
        factors.append({"system": "all", "generator": gen, **_enhance(g, enhancement)})
    return summary, factors


def _enhance(g: pd.DataFrame, enhancement) -> dict:
    on = g[g["learning"] == "on"].set_index(["system", "seed"])
    off = g[g["learning"] == "off"].set_index(["system", "seed"])
    both = on.index.intersection(off.index)
    if not len(both):
        return {"pairs": 0}
    hits = enhancement(on.loc[both, "hits"], off.loc[both, "hits"])
    auc = enhancement(on.loc[both, "auc_hits"], off.loc[both, "auc_hits"])
    return {"hits": hits, "auc": auc, "pairs": len(both)}


def plot(records: list[dict], budget: int, path: Path) -> None:
    """One panel per system: cumulative hits (rediscoveries + S.U.N.) against relaxations spent, mean over seeds
    with the min-max band; solid learning on, dashed off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(r["system"] for r in records))
    cols = min(3, len(systems))
    rows = -(-len(systems) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, dpi=100)
    x = np.arange(1, budget + 1)
    for ax, system in zip(axes.flat, systems):
        groups: dict[tuple, list] = {}
        for r in records:
            if r["system"] == system and r.get("curve_hits"):
                groups.setdefault((r["generator"], r["learning"]), []).append(r["curve_hits"])
        for (gen, lrn), curves in groups.items():
            c = np.array(curves)
            ax.plot(x, c.mean(0), color=COLORS.get(gen), ls="-" if lrn == "on" else "--",
                    label=f"{gen} ({'learning' if lrn == 'on' else 'no learning'})")
            ax.fill_between(x, c.min(0), c.max(0), color=COLORS.get(gen), alpha=0.12)
        ax.set_title(system)
        ax.set_xlabel("MLIP relaxations spent")
        ax.set_ylabel("hits (rediscovery + S.U.N.)")
    for ax in list(axes.flat)[len(systems):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    ncol = 2 if cols == 1 else 4
    legend_rows = -(-len(labels) // ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, min(0.5, 0.22 * legend_rows / (3.2 * rows)), 1, 1))
    fig.savefig(path)
    plt.close(fig)


def write_outputs(records: list[dict], args, data: BenchmarkData, wall_s: float, partial: bool = False) -> dict:
    """The JSON (arms, summary, enhancement), the PNG and the CSV of judged relaxations (hits with their CIF);
    ``partial`` marks a file written while the run goes on (the arms done so far)."""
    summary, factors = aggregate(records)
    commit = git_commit()
    out = args.out or ROOT / "benchmarks" / "results" / f"discovery-{commit}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tables = [r.pop("relaxations") for r in records if "relaxations" in r]
    result = {
        "benchmark": "discovery", "commit": commit, "date": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "partial": partial, "tier": args.tier, "systems": args.systems, "generators": args.generators, "learning": args.learning,
        "seeds": args.seeds, "rounds": args.rounds, "per_round": args.per_round, "budget": args.budget,
        "max_rounds": 3 * args.rounds, "overrides": args.overrides, "mlip": args.mlip, "wall_s": wall_s,
        "heldout": data.heldout.drop(columns=["cif"]).to_dict(orient="records"),
        "hull_table": str(data.hull_table), "elemental_references": str(data.elemental),
        "data": [str(p) for p in args.data], "templates": [str(p) for p in args.templates],
        "summary": summary, "enhancement": factors, "arms": records,
    }
    out.write_text(json.dumps(result, indent=2, default=str))
    if any(r.get("curve_hits") for r in records):
        plot(records, args.budget, out.with_suffix(".png"))
    if tables:  # every judged relaxation; hits carry their relaxed structure as CIF (the samples behind the numbers)
        pd.concat(tables, ignore_index=True).to_csv(out.with_name(out.stem + "-relaxations.csv.gz"), index=False)
    if not partial:
        _print(summary, factors, out)
    return result


def _print(summary: list[dict], factors: list[dict], out: Path) -> None:
    print(f"\n{'system':<9} {'generator':<12} {'learning':<8} {'spent':>6} {'redisc':>7} {'S.U.N.':>7} "
          f"{'hits/100':>9} {'AUC':>6}")
    for r in summary:
        print(f"{r['system']:<9} {r['generator']:<12} {r['learning']:<8} {r['spent']:6.1f} {r['rediscovery']:7.2f} "
              f"{r['sun']:7.2f} {r['hits_per_100']:9.2f} {r['auc_hits']:6.2f}")
    for f in factors:
        if f.get("pairs") and f["system"] == "all":
            h = f["hits"]
            print(f"enhancement (learning on / off), {f['generator']} over all systems: hits "
                  f"{_fmt(h['ratio_of_means'])} (on {_fmt(h['on_mean'])}, off {_fmt(h['off_mean'])}, "
                  f"{f['pairs']} pairs)")
    print(f"wrote {out}")


def _fmt(x) -> str:
    return "undefined" if x is None else f"{x:.2f}"
