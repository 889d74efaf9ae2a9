"""How a campaign's cost grows with its round size: rounds of 16, 64, 256 and 1 024 relaxations.

    python benchmarks/scale.py [--sizes 16,64,256,1024] [--rounds 2] [--engine batched|ase] [--chunk-size 8]
                               [--model PATH] [--out benchmarks/results/scale.json]

Each size is a real campaign in its own process (Prefect, 2 worker processes, SQLite store, DFT off): the random
generator (pyxtal) proposes 1.5 x size + 8 Mg-O structures a round, the filter (validity, dedupe against every
earlier candidate, novelty against the seeds) judges them, acquisition ``random`` (composition surrogate, no
MLIP screen) picks ``size`` of the accepted ones, the MLIP (the tests' tiny MACE, trained on Mg-O, unless
``--model``) relaxes them in chunks of ``--chunk-size`` (the same for every size, so the compute per relaxation
is comparable), evaluate builds the hull and matches the new relaxed structures against the earlier ones.

Reported per size and step: wall time, time per relaxed candidate, Prefect overhead (flow wall time outside every
task body and outside the workers' start, split into before the first task body: flow run and runner start, once a
campaign; between task bodies; after the last), the workers' start (process spawned -> imports done -> the model
load began: what any process pool pays, reported on its own, and with the overhead as ``idle_share``: the flow's
wall time outside every task body, the old measure), the filter's share of the round, peak memory of the flow
process and of the workers. The ratios are against the 16-candidate round of the same run.

Targets (issue 21): time per relaxed candidate flat within 20 % from 16 to 1 024; Prefect overhead <= 5 % at every
size; filter (+ dedupe + novelty) <= 5 % of a round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

TARGETS = {"per_candidate_growth_max": 1.2, "prefect_overhead_share_max": 0.05, "filter_share_max": 0.05}


def one_size(size: int, rounds: int, engine: str, chunk: int, model: str, extra: Sequence[str] = (),
             observe: Callable[[str, str], ContextManager[Any]] | None = None) -> dict:
    """Run one campaign with ``size`` relaxations a round; return its measurements.

    ``extra`` config overrides apply after this benchmark's own (another generator, proposal count or runner);
    ``observe(store_url, campaign_id)`` is a context manager held open while the campaign runs (watchers that
    poll the store or the scheduler: benchmarks/slurm_scale.py)."""
    from benchmarks.campaign import union_length
    from conf import load_config
    from flows.campaign import run_campaign, start_campaign
    from flows.server import prefect_api
    from tasks.store import Store

    workdir = Path(tempfile.mkdtemp(prefix=f"matloop-scale-{size}-"))
    overrides = [f"output_dir={workdir}", f"rounds={rounds}", "name=scale", "target.chemical_system=Mg-O",
                 "target.oxidation_states={Mg: 2, O: -2}", "dft.backend=none", "generator.name=random",
                 f"generator.n_per_round={int(1.5 * size) + 8}", "acquisition.function=random",
                 "acquisition.surrogate=formation_energy",
                 f"acquisition.relax_per_round={size}", "relax.backend=mace", f"relax.mace_model={model}",
                 f"relax.engine={engine}", f"relax.chunk_size={chunk}", "runner.kind=processes", "runner.max_workers=2",
                 *extra]
    cfg = load_config(None, overrides)
    cid = start_campaign(cfg)
    with prefect_api(), (observe(cfg.store_url(), cid) if observe else nullcontext()):
        t0, wall0 = time.perf_counter(), time.time()
        out = run_campaign(cfg.store_url(), cid)
        flow_s, wall1 = time.perf_counter() - t0, time.time()
    store = Store(cfg.store_url())
    steps: dict[str, dict[str, float]] = {}
    intervals = [tuple(i) for i in out["intervals"]]
    relaxed = 0
    for r in store.rounds(cid):
        relaxed += int(r.summary.get("relaxed") or 0)
        for step, t in r.summary.get("timings", {}).items():
            agg = steps.setdefault(step, {"wall_s": 0.0, "compute_s": 0.0})
            agg["wall_s"] += t["wall_s"]
            agg["compute_s"] += t.get("compute_s", 0.0)
            intervals += [tuple(i) for i in t["intervals"]]
    busy = union_length(intervals)
    # the workers' start (spawn and imports, before their model load) overlaps the flow's first steps; only the
    # part when nothing else ran is time the flow waited for it
    starting = [tuple(i) for i in out.get("worker_start", [])]
    waited = union_length(intervals + starting) - busy
    # the overhead split: before the first task body (flow run, runner start), after the last, and between tasks
    before = max(min(a for a, _ in intervals) - wall0, 0.0) if intervals else 0.0
    after = max(wall1 - max(b for _, b in intervals), 0.0) if intervals else 0.0
    round_s = sum(s["wall_s"] for s in steps.values())
    return {"size": size, "rounds": rounds, "relaxed": relaxed, "flow_s": flow_s, "steps": steps,
            "per_relaxed_s": flow_s / max(relaxed, 1),
            "prefect_overhead_share": (flow_s - busy - waited) / flow_s,
            "prefect_overhead_s": {"total": flow_s - busy - waited, "before_first_task": before,
                                   "after_last_task": after, "between_tasks": flow_s - busy - waited - before - after},
            "prefect_overhead_between_tasks_share": (flow_s - busy - waited - before - after) / flow_s,
            "worker_start_wait_s": waited, "worker_start_s": [b - a for a, b in starting],
            "idle_share": (flow_s - busy) / flow_s,
            "filter_share": steps.get("filter", {}).get("wall_s", 0.0) / round_s if round_s else None,
            "generated": sum(int(r.summary.get("generated") or 0) for r in store.rounds(cid)),
            "accepted": sum(int(r.summary.get("accepted") or 0) for r in store.rounds(cid)),
            "peak_rss_mb": {"flow": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                            "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024},
            "mlip": store.campaign(cid).mlip, "workdir": str(workdir), "store_url": cfg.store_url(),
            "campaign_id": cid, "overrides": list(extra)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="16,64,256,1024")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--engine", choices=["ase", "batched"], default="batched")
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--model", default=None, help="MACE model file (default: train the tests' tiny MACE).")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/matloop-scale"))
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # one size, in a child process
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()

    from tests.mace_tiny import tiny_mace_model

    model = args.model or tiny_mace_model(args.workdir)
    if args.one is not None:
        print("RESULT " + json.dumps(one_size(args.one, args.rounds, args.engine, args.chunk_size, model)))
        return

    runs = []
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(size), "--rounds", str(args.rounds), "--engine", args.engine,
               "--chunk-size", str(args.chunk_size), "--model", model]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise SystemExit(f"size {size} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        run = json.loads(line[len("RESULT "):])
        runs.append(run)
        print(f"{size:>5} a round: {run['flow_s']:7.1f} s, {run['per_relaxed_s']:.3f} s per relaxed candidate, "
              f"Prefect overhead {100 * run['prefect_overhead_share']:.1f} % (between tasks "
              f"{100 * run['prefect_overhead_between_tasks_share']:.1f} %; waiting for the workers' start "
              f"{run['worker_start_wait_s']:.1f} s), filter {100 * run['filter_share']:.1f} % "
              f"of the rounds; steps " + ", ".join(f"{k} {v['wall_s']:.1f}" for k, v in run["steps"].items()),
              flush=True)
    base = runs[0]["per_relaxed_s"]
    for run in runs:
        run["per_relaxed_ratio_to_smallest"] = run["per_relaxed_s"] / base
    result = {
        "benchmark": "scale", "date": datetime.now(timezone.utc).isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "engine": args.engine, "chunk_size": args.chunk_size, "rounds": args.rounds, "runs": runs, "targets": TARGETS,
        "meets_targets": {
            "per_candidate_flat": max(r["per_relaxed_ratio_to_smallest"] for r in runs)
            <= TARGETS["per_candidate_growth_max"],
            "prefect_overhead": all(r["prefect_overhead_share"] <= TARGETS["prefect_overhead_share_max"] for r in runs),
            "filter_share": all((r["filter_share"] or 0) <= TARGETS["filter_share_max"] for r in runs)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["meets_targets"]), f"-> {args.out}")


if __name__ == "__main__":
    main()
