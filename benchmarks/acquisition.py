"""Acquisition benchmark (retrospective): does choosing what to relax by a surrogate beat choosing at random?

Same candidates, same budget, held-out truth. The pool of a system is every candidate the discovery benchmark
relaxed there (all generators, seeds and learning arms of the run given by ``--run``, with its judged kinds:
a hit is a rediscovery or a S.U.N. phase against the MP-20 hull). One simulated campaign draws a random stream
of the pool in batches of ``--batch`` (what a generator proposes in a round), relaxes ``--choose`` of each batch
(reveals their MLIP labels) and moves on, for ``--rounds`` rounds; the surrogate of tasks/acquire.py learns from
the campaign's relaxed known phases plus everything revealed so far. Every strategy sees the same streams
(common random numbers), so the differences are the choices alone. Writes benchmarks/results/acquisition-
<commit>.json.

    python benchmarks/acquisition.py --run benchmarks/results/discovery-bf21151-relaxations.csv.gz --reps 40
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

STRATEGIES = {  # name -> acquisition settings (conf/loop.py AcquisitionConfig)
    "random": {"function": "random"},
    "greedy:mlip": {"function": "greedy", "surrogate": "mlip"},
    "lcb:ef": {"function": "lcb", "surrogate": "formation_energy"},
    "lcb:ehull": {"function": "lcb", "surrogate": "e_above_hull"},
    "lcb:ehull:proposed": {"function": "lcb", "surrogate": "e_above_hull", "inputs": "proposed"},
    "lcb:ehull:proposed:failed": {"function": "lcb", "surrogate": "e_above_hull", "inputs": "proposed",
                                  "failed_e_above_hull": 0.5},
    "greedy:ehull:proposed:failed": {"function": "greedy", "surrogate": "e_above_hull", "inputs": "proposed",
                                     "failed_e_above_hull": 0.5},
    "ei:ehull:proposed:failed": {"function": "ei", "surrogate": "e_above_hull", "inputs": "proposed",
                                 "failed_e_above_hull": 0.5},
    "lcb:ef:proposed:failed": {"function": "lcb", "surrogate": "formation_energy", "inputs": "proposed",
                               "failed_e_above_hull": 0.5},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="A discovery run's -relaxations.csv.gz (judged kinds).")
    p.add_argument("--store", type=Path, default=ROOT / "campaigns/discovery/discovery.db")
    p.add_argument("--systems", help="Comma-separated; default every system of the run.")
    p.add_argument("--generators", help="Comma-separated: pool only these generators' candidates (default: all).")
    p.add_argument("--strategies", default=",".join(STRATEGIES), help=f"From {', '.join(STRATEGIES)}.")
    p.add_argument("--reps", type=int, default=40, help="Simulated campaigns per system and strategy.")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=18, help="Candidates proposed per round.")
    p.add_argument("--choose", type=int, default=6, help="Candidates relaxed per round.")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    bad = [s for s in args.strategies.split(",") if s not in STRATEGIES]
    if bad or not args.run.is_file() or not args.store.is_file():
        p.error(f"unknown strategies {bad} (allowed: {', '.join(STRATEGIES)})" if bad else
                f"missing {args.run if not args.run.is_file() else args.store}")
    return args


def system_pool(store, judged: pd.DataFrame, system: str):
    """(training set of the known phases, hull, pool rows: hash, unrelaxed structure, relaxed structure or None,
    formation energy or None, hit) for one system."""
    from tasks.acquire import campaign_training_set
    from tasks.candidate import structure_from_json
    from tasks.context import relax_context

    rows = judged[judged["system"] == system]
    hits = set(rows.loc[rows["kind"].isin(["rediscovery", "sun"]), "hash"])
    names = {c.name: c.id for c in store.campaigns()}
    arms = {f"discovery:{system}:{g}:{lrn}:s{s}:" for g, lrn, s in
            rows[["generator", "learning", "seed"]].drop_duplicates().itertuples(index=False)}
    cids = [cid for name, cid in names.items() if any(name.startswith(a) for a in arms)
            and store.config(cid).acquisition.function == "all"]
    known = campaign_training_set(store, cids[0], candidates=False)
    spec = relax_context(store, cids[0]).spec
    pool: dict[str, tuple] = {}
    for cid in cids:
        _, spec, shash = relax_context(store, cid)
        eform = {p.hash: p.value for p in store.properties(cid)
                 if p.name == "formation_energy_per_atom" and p.source == "mlip"}
        for c, rel in store.relaxations(cid, spec.identity, shash):
            if c.hash in pool or c.hash not in set(rows["hash"]):
                continue
            ok = rel.status == "converged" and c.hash in eform
            pool[c.hash] = (c.hash, structure_from_json(c.structure), structure_from_json(rel.final_structure) if ok else None,
                            eform.get(c.hash) if ok else None, c.hash in hits)
    return known, list(pool.values()), spec


def screen_pool(pool, known, spec) -> np.ndarray:
    """The MLIP single-point E_hull of every proposed cell of the pool (tasks/acquisition/screen.py)."""
    from tasks.acquisition.screen import screened_e_above_hull, single_point_energies
    from tasks.mlip import load_calculator

    structures = [p[1] for p in pool]
    return screened_e_above_hull(structures, single_point_energies(structures, load_calculator(spec)),
                                 known.elemental, known.hull.e_above_hull)


def simulate(known, pool, screened, strategy: str, stream: np.ndarray, args, seed: int) -> list[int]:
    """Cumulative hits after each relaxation of one simulated campaign."""
    from conf.loop import AcquisitionConfig
    from tasks.acquire import rank_candidates

    cfg = AcquisitionConfig(**STRATEGIES[strategy], relax_per_round=args.choose)
    train, curve = list(known.train), []
    for r in range(args.rounds):
        idx = stream[r * args.batch:(r + 1) * args.batch]
        batch = [pool[i] for i in idx]
        rows = rank_candidates([(b[0], b[1]) for b in batch], train, known.hull.e_above_hull, cfg, 0.1,
                               seed * 1000 + r, None if screened is None else screened[idx])
        order = sorted((x for x in rows if x["chosen"]), key=lambda x: x["rank"])
        by_hash = {b[0]: b for b in batch}
        for x in order:
            h, proposed, relaxed, ef, hit = by_hash[x["hash"]]
            curve.append((curve[-1] if curve else 0) + int(hit))
            if relaxed is None:  # failed: rank_candidates labels it, or leaves it out
                train.append((proposed, None))
            else:
                train.append((proposed if cfg.inputs == "proposed" else relaxed, ef))
    return curve


def main(argv=None) -> dict:
    args = parse_args(argv)
    from tasks.store import Store

    store = Store(f"sqlite:///{args.store.resolve()}")
    judged = pd.read_csv(args.run, usecols=["hash", "kind", "system", "generator", "learning", "seed"])
    if args.generators:
        judged = judged[judged["generator"].isin(args.generators.split(","))]
    systems = args.systems.split(",") if args.systems else sorted(judged["system"].unique())
    strategies = args.strategies.split(",")
    t0, results = time.perf_counter(), []
    for system in systems:
        known, pool, spec = system_pool(store, judged, system)
        need = args.rounds * args.batch
        if len(pool) < need:
            print(f"{system}: pool of {len(pool)} < {need}, skipped", flush=True)
            continue
        base_rate = sum(p[4] for p in pool) / len(pool)
        streams = [np.random.default_rng(rep).permutation(len(pool))[:need] for rep in range(args.reps)]
        t_screen = time.perf_counter()
        screened = screen_pool(pool, known, spec) if any("mlip" in s for s in strategies) else None
        t_screen = time.perf_counter() - t_screen
        for strategy in strategies:
            curves = [simulate(known, pool, screened, strategy, s, args, rep) for rep, s in enumerate(streams)]
            hits = np.array([c[-1] for c in curves], dtype=float)
            results.append({"system": system, "strategy": strategy, "pool": len(pool), "pool_hit_rate": base_rate,
                            "known_train": len(known.train), "screen_s_per_cell": t_screen / len(pool),
                            "hits_mean": float(hits.mean()),
                            "hits_std": float(hits.std(ddof=1)), "hits_sem": float(hits.std(ddof=1) / np.sqrt(len(hits))),
                            "curve_mean": np.mean(curves, axis=0).tolist(), "hits": hits.tolist()})
            print(f"{system:8s} {strategy:28s} pool {len(pool):4d} (hit rate {base_rate:.2f}) hits "
                  f"{hits.mean():.2f} ± {hits.std(ddof=1) / np.sqrt(len(hits)):.2f}", flush=True)
    overall = {}
    for strategy in strategies:
        per = [r["hits_mean"] for r in results if r["strategy"] == strategy]
        rnd = [r["hits_mean"] for r in results if r["strategy"] == "random"]
        overall[strategy] = {"hits_mean": float(np.mean(per)) if per else None,
                             "ratio_to_random": float(np.sum(per) / np.sum(rnd)) if rnd and np.sum(rnd) else None}
    for s, o in overall.items():
        print(f"overall {s:28s} hits/campaign {o['hits_mean']:.2f}  x random {o['ratio_to_random']}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                            check=False).stdout.strip() or "unknown"
    out = args.out or ROOT / f"benchmarks/results/acquisition-{commit}.json"
    doc = {"benchmark": "acquisition (retrospective)", "commit": commit, "run": args.run.name, "reps": args.reps,
           "generators": args.generators or "all",
           "rounds": args.rounds, "batch": args.batch, "choose": args.choose, "wall_s": time.perf_counter() - t0,
           "overall": overall, "results": results}
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")
    return doc


if __name__ == "__main__":
    main()
