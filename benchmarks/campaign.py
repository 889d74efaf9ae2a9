"""Time a campaign end to end: wall time per step and the share spent in Prefect overhead.

The baseline is measured in the same run: the time during which at least one task body was executing our
own code (the union of all task intervals). Everything else inside the flow run is orchestration overhead
(Prefect flow/task runs, result persistence, worker start-up). Writes JSON comparable across commits.

    python benchmarks/campaign.py [--config conf/campaign.yaml] [--set key=value ...] [--out FILE]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

TARGETS = {"campaign_wall_s_max": 600.0, "prefect_overhead_share_max": 0.05}


def union_length(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by a set of [start, end] intervals."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from conf import load_config
    from flows.campaign import run_campaign, start_campaign
    from flows.server import prefect_api
    from tasks.store import Store
    from tasks.store.views import candidate_frame

    workdir = Path(tempfile.mkdtemp(prefix="matloop-bench-"))
    cfg = load_config(args.config, [*args.overrides, f"output_dir={workdir}"])
    t0 = time.perf_counter()
    cid = start_campaign(cfg)
    t_setup = time.perf_counter() - t0
    with prefect_api():
        t_server = time.perf_counter() - t0 - t_setup
        t1 = time.perf_counter()
        flow_result = run_campaign(cfg.store_url(), cid)
        t_flow = time.perf_counter() - t1
    t_total = time.perf_counter() - t0

    store = Store(cfg.store_url())
    steps: dict[str, float] = {}
    intervals: list[tuple[float, float]] = [tuple(i) for i in flow_result["intervals"]]  # MLIP resolve/load
    for r in store.rounds(cid):
        for step, t in r.summary.get("timings", {}).items():
            steps[step] = steps.get(step, 0.0) + t["wall_s"]
            intervals += [tuple(i) for i in t["intervals"]]
    busy = union_length(intervals)
    overhead = t_flow - busy
    df = candidate_frame(cfg.store_url(), cid)
    result = {
        "benchmark": "campaign", "commit": git_commit(), "date": datetime.now(timezone.utc).isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "config": cfg.name, "rounds": cfg.rounds, "generator": cfg.generator.name, "mlip": store.campaign(cid).mlip,
        "runner": cfg.runner.model_dump(),
        "wall_s": {"total": t_total, "setup_seeds": t_setup, "prefect_server_start": t_server, "flow": t_flow,
                   "steps": steps},
        "task_busy_s": busy, "prefect_overhead_s": overhead, "prefect_overhead_share": overhead / t_flow,
        "flow_over_busy_ratio": t_flow / busy if busy else None,
        "candidates": int(len(df)), "relaxed": int(df["relax_status"].notna().sum()),
        "converged": int((df["relax_status"] == "converged").sum()),
        "stable_new": int(df["stable_new"].sum()),
        "targets": TARGETS,
    }
    result["meets_targets"] = {"campaign_wall": t_total <= TARGETS["campaign_wall_s_max"],
                               "prefect_overhead": (result["prefect_overhead_share"]
                                                    <= TARGETS["prefect_overhead_share_max"])}
    out = args.out or ROOT / "benchmarks" / "results" / f"campaign-{result['commit']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"campaign {cfg.name}: {t_total:.1f} s total (seeds {t_setup:.1f} s, Prefect server {t_server:.1f} s, "
          f"flow {t_flow:.1f} s)")
    for step, t in steps.items():
        print(f"  {step:<9} {t:7.1f} s")
    print(f"flow / task-busy ratio {result['flow_over_busy_ratio']:.3f}; Prefect overhead {overhead:.1f} s = "
          f"{100 * result['prefect_overhead_share']:.1f} % of the flow (target <= 5 %)")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
