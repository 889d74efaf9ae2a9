"""Thousands of generated candidates through the filter: how generate + filter scale with the proposals a round.

    python benchmarks/filter_scale.py [--proposals 1000,10000] [--relax 16] [--model PATH]
                                      [--out benchmarks/results/filter_scale.json]

Each count is a one-round Mg-O campaign in its own process, set up as in benchmarks/scale.py (Prefect, 2 worker
processes, SQLite store, DFT off), except that the generator is the builtin GAN (``generator.name=gan``, which
samples thousands of crystals a second) proposing that many candidates. The filter judges every one of them:
SMACT neutrality and electronegativity, distances, volume and density, novelty against the seeds and dedupe
against every earlier candidate of the campaign and of the round (``tasks/metrics/matching.py``: StructureMatcher
inside a (formula, primitive size) bucket after a lattice prefilter). Acquisition ``random`` then picks ``--relax``
accepted ones for the tests' tiny MACE, so the round's time is mostly generate + filter + store.

Reported per count: generate, filter and round wall time, filter time per proposal, accepted and rejected by
check, the filter's share of the round, peak memory; and the filter's time per proposal against the smallest
count's, measured in the same run (1.0 = flat; dedupe that compares each candidate with all earlier ones would
grow with the count).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def one_count(n: int, relax: int, model: str) -> dict:
    from benchmarks.scale import one_size
    from tasks.store import Store

    run = one_size(relax, 1, "batched", 8, model, extra=["generator.name=gan", f"generator.n_per_round={n}"])
    round0 = Store(run["store_url"]).round(run["campaign_id"], 0).summary
    filter_s = run["steps"]["filter"]["wall_s"]
    return {**run, "proposals": n, "filter_s_per_proposal": filter_s / n,
            "rejections_by_check": round0.get("rejections_by_check", {}),
            "cdvae_validity": round0.get("cdvae_validity")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proposals", default="1000,10000")
    parser.add_argument("--relax", type=int, default=16, help="Relaxations in the round (acquisition random).")
    parser.add_argument("--model", default=None, help="MACE model file (default: train the tests' tiny MACE).")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/matloop-scale"))
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # one count, in a child process
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "filter_scale.json")
    args = parser.parse_args()

    from tests.mace_tiny import tiny_mace_model

    model = args.model or tiny_mace_model(args.workdir)
    if args.one is not None:
        print("RESULT " + json.dumps(one_count(args.one, args.relax, model)))
        return
    runs = []
    for n in (int(x) for x in args.proposals.split(",")):
        cmd = [sys.executable, __file__, "--one", str(n), "--relax", str(args.relax), "--model", model]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise SystemExit(f"{n} proposals failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        run = json.loads(line[len("RESULT "):])
        runs.append(run)
        steps = run["steps"]
        print(f"{n:>6} proposals: generate {steps['generate']['wall_s']:.1f} s, "
              f"filter {steps['filter']['wall_s']:.1f} s "
              f"({1000 * run['filter_s_per_proposal']:.2f} ms each, {100 * run['filter_share']:.1f} % of the round), "
              f"accepted {run['accepted']}, rejected {run['rejections_by_check']}, flow {run['flow_s']:.1f} s",
              flush=True)
    base = runs[0]["filter_s_per_proposal"]
    for run in runs:
        run["filter_per_proposal_ratio_to_smallest"] = run["filter_s_per_proposal"] / base
    result = {"benchmark": "filter_scale", "date": datetime.now(timezone.utc).isoformat(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "generator": "gan (builtin)", "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("filter time per proposal vs the smallest count: "
          + ", ".join(f"{r['proposals']}: x{r['filter_per_proposal_ratio_to_smallest']:.2f}" for r in runs),
          f"-> {args.out}")


if __name__ == "__main__":
    main()
