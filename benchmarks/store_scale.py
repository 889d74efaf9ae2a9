"""How the store and the CLI's read commands scale with a campaign's size.

    python benchmarks/store_scale.py [--n 100000] [--per-round 1000] [--url sqlite|postgresql+psycopg://...]
                                     [--existing] [--baseline-url URL]
                                     [--out benchmarks/results/store_scale-<backend>.json]

Fills a real campaign through the campaign's own store calls (``save_proposals``, ``save_verdicts``,
``save_relaxations``, ``save_evaluations``: the writes a round makes), ``--per-round`` candidates a round until the
campaign holds ``--n``: perturbed copies of the campaign's real Mg-Si-O seed structures (a distinct hash each),
90 % passing the filter, 95 % of those converged, energies drawn at random. The store time of every round is kept,
so its growth with the campaign's size shows.

Then times what a user runs, each as its own process (``matloop status``, ``matloop status <id>``,
``matloop candidates <id> --top 20``), on this store and, as the baseline measured in the same run, on a store
holding one 16-candidate round: the difference is what the size costs. Target: each under 2 s at 100 000.
``--existing`` skips the filling and re-times the commands on the largest campaign of a store an earlier run
filled (after a change to the read path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

TARGET_S = 2.0


def _candidates(bases, rng, n: int, r: int):
    from pymatgen.core import Structure

    from tasks.candidate import Candidate, Provenance

    out = []
    for i in range(n):
        base = bases[int(rng.integers(len(bases)))]
        s = Structure(base.lattice, base.species, base.frac_coords + rng.normal(0, 0.02, (len(base), 3)))
        prov = Provenance(generator="random", generator_identity="store-scale", round_index=r,
                          arm=s.composition.reduced_formula, key=f"r{r}-{i}", conditions_hash="x")
        out.append(Candidate.create(s, prov))
    return out


def fill_round(store, cid: str, r: int, cands, rng, cfg) -> float:
    """Write one round as a campaign does; returns the seconds spent in store calls."""
    from tasks.context import make_conditions
    from tasks.results import Evaluation, FilterVerdict, Rejection, RelaxResult

    verdicts_in = [FilterVerdict(hash=c.hash, passed=bool(rng.random() < 0.9)) for c in cands]
    verdicts_in = [v if v.passed else v.model_copy(update={"rejections": [Rejection(check="min_distance",
                                                                                    detail="0.41 Å")]})
                   for v in verdicts_in]
    start = time.perf_counter()
    store.save_proposals(cid, r, cands, make_conditions(cfg.target, r), {"generated": len(cands)})
    pids = [pid for pid, _, _ in store.proposals(cid, r)]
    store.save_verdicts(cid, r, list(zip(pids, verdicts_in, strict=True)),
                        {"accepted": sum(v.passed for v in verdicts_in)})
    elapsed = time.perf_counter() - start
    passed = [c for c, v in zip(cands, verdicts_in, strict=True) if v.passed]
    results = []
    for c in passed:
        ok = rng.random() < 0.95
        e = float(rng.normal(-6.5, 0.3))
        results.append(RelaxResult(hash=c.hash, status="converged" if ok else "not_converged",
                                   energy=e * len(c.structure), energy_per_atom=e, max_force=0.03,
                                   n_steps=int(rng.integers(20, 200)),
                                   volume_ratio=1.02, final_structure=c.structure.to_json(), mlip="chgnet:0.3.0@bench",
                                   settings_hash="51ace56b5dbb", wall_time_s=0.5))
    evaluations = [Evaluation(hash=x.hash, formula=c.formula, energy_per_atom=x.energy_per_atom,
                              formation_energy_per_atom=float(rng.normal(-2.5, 0.4)),
                              e_above_hull=float(rng.exponential(0.15)), stable=False, meets_targets=False)
                   for x, c in zip(results, passed, strict=True) if x.status == "converged"]
    start = time.perf_counter()
    store.save_relaxations(cid, results)
    store.save_evaluations(cid, r, evaluations, "chgnet:0.3.0@bench", "completed",
                           {"generated": len(cands), "accepted": len(passed), "relaxed": len(results),
                            "relax_converged": len(evaluations), "stable_new": 0})
    return elapsed + time.perf_counter() - start


def make_campaign(url: str, rounds: int, workdir: Path):
    from conf import load_config
    from flows.campaign import start_campaign

    cfg = load_config(None, [f"output_dir={workdir}", f"rounds={rounds}", f"store.url={url}", "dft.backend=none"])
    return cfg, start_campaign(cfg)


def cli_seconds(args: list[str], url: str, repeats: int = 3) -> float:
    """Best wall time of ``matloop <args> --store url`` run as a process."""
    exe = str(Path(sys.executable).with_name("matloop"))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run([exe, *args, "--store", url], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "200"})
        best = min(best, time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"matloop {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return best


def largest_campaign(url: str) -> tuple[str, int]:
    """The campaign of the store at ``url`` holding the most candidates, and how many."""
    from sqlalchemy import func, select

    from tasks.store import transaction
    from tasks.store.tables import CandidateRow

    with transaction(url) as s:
        row = s.execute(select(CandidateRow.campaign_id, func.count()).group_by(CandidateRow.campaign_id)
                        .order_by(func.count().desc()).limit(1)).first()
    if row is None:
        raise SystemExit(f"error: --existing: the store at {url.split('@')[-1]} holds no candidates")
    return row[0], row[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--per-round", type=int, default=1000)
    parser.add_argument("--url", default=None, help="Store URL (default: a SQLite file in a temporary folder).")
    parser.add_argument("--existing", action="store_true", help="--url is a store an earlier run filled: only time "
                        "the read commands on its largest campaign (after a code change), against a new baseline "
                        "store (--baseline-url).")
    parser.add_argument("--baseline-url", default=None, help="Where the 16-candidate baseline campaign goes (default: "
                        "a new SQLite file; for PostgreSQL without --existing: the same database, timed before the "
                        "big campaign exists).")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.existing and not args.url:
        parser.error("--existing needs --url")

    from benchmarks.campaign import git_commit
    from tasks.store import Store
    from tasks.store.secrets import public_url

    workdir = Path(tempfile.mkdtemp(prefix="matloop-store-scale-"))
    url = args.url or f"sqlite:///{workdir / 'big.db'}"
    small_url = args.baseline_url or (f"sqlite:///{workdir / 'small.db'}" if url.startswith("sqlite") or args.existing
                                      else url)
    rng = np.random.default_rng(0)
    rounds = -(-args.n // args.per_round)

    # the baseline: one 16-candidate round, timed before the big campaign exists (PostgreSQL may share a database)
    small_cfg, small_cid = make_campaign(small_url, 1, workdir / "small")
    small = Store(small_url)
    bases = [s.structure for s in small.seed_set(small_cid).known_phases if len(s.structure) <= 20]
    fill_round(small, small_cid, 0, _candidates(bases, rng, 16, 0), rng, small_cfg)
    small_commands = {"status": ["status"], "status <id>": ["status", small_cid],
                      "candidates --top 20": ["candidates", small_cid, "--top", "20"]}
    baseline = {name: cli_seconds(cmd, small_url) for name, cmd in small_commands.items()}

    per_round, build_s = [], 0.0
    if args.existing:
        cid, n = largest_campaign(url)
    else:
        cfg, cid = make_campaign(url, rounds, workdir / "big")
        store, n = Store(url), args.n
        for r in range(rounds):
            t = time.perf_counter()
            cands = _candidates(bases, rng, min(args.per_round, args.n - r * args.per_round), r)
            build_s += time.perf_counter() - t
            per_round.append(fill_round(store, cid, r, cands, rng, cfg))
            if r % 10 == 0 or r == rounds - 1:
                print(f"round {r}: store {per_round[-1]:.2f} s for {len(cands)} candidates", flush=True)

    commands = {"status": ["status"], "status <id>": ["status", cid], "candidates --top 20": ["candidates", cid,
                                                                                              "--top", "20"]}
    timings = {}
    for name in commands:
        base = baseline[name]
        big = cli_seconds(commands[name], url)
        timings[name] = {"seconds": big, "baseline_seconds": base, "ratio": big / base, "meets_target": big < TARGET_S}
        print(f"matloop {name:<20} {big:6.2f} s at {n} candidates; {base:5.2f} s at 16 (x{big / base:.2f})",
              flush=True)
    result = {
        "benchmark": "store_scale", "date": datetime.now(timezone.utc).isoformat(), "commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "backend": url.split(":", 1)[0], "url": public_url(url), "baseline_url": public_url(small_url),
        "candidates": n, "existing_store": args.existing, "cli": timings, "target_s": TARGET_S,
    }
    if per_round:
        first, last = np.mean(per_round[:5]), np.mean(per_round[-5:])
        result.update({
            "per_round": args.per_round, "rounds": rounds, "build_candidates_s": build_s,
            "store_write_s_per_round": {"first_5_mean": first, "last_5_mean": last, "growth": last / first,
                                        "all": per_round},
            "store_write_s_per_candidate": {"first_5": first / args.per_round, "last_5": last / args.per_round}})
        print(f"store writes per round: {first:.2f} s (first 5) -> {last:.2f} s (last 5), x{last / first:.2f}")
    backend = result["backend"].split("+")[0]
    out = args.out or ROOT / "benchmarks" / "results" / f"store_scale-{backend}{'-cli' if args.existing else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
