"""A 1 024-relaxation round on Dask workers that are SLURM jobs: adaptive scaling, a worker job cancelled mid-round.

    python benchmarks/slurm_scale.py [--size 1024] [--chunk-sizes 8,32] [--maximum 4] [--no-cancel] [--model PATH]
                                     [--out benchmarks/results/slurm_scale.json]

Needs a SLURM (``.ci/slurm.sh`` starts a single-node one). For each chunk size: one round of benchmarks/scale.py's
campaign (random generator, filter without dedupe, acquisition ``random`` picking ``--size``, the tests' tiny MACE on
the batched engine) with ``runner.kind=dask-slurm``: worker jobs of one core each, adaptive between 1 and
``--maximum``. While it runs, a watcher polls ``squeue`` every second (every worker job: when first seen pending,
running, and gone: jobs started and stopped by adaptive scaling), and, unless ``--no-cancel``, ``scancel``s the
worker job that has relaxed the most once a quarter of the round is in the store. Afterwards the store says which job
relaxed each candidate; the benchmark checks that every candidate acquisition selected was relaxed exactly once (none
lost to the cancelled job, none written twice when Dask reran the lost job's tasks elsewhere).

Reported per chunk size: round wall time, time per relaxed candidate, Prefect + Dask overhead share (flow time
outside every task body, as benchmarks/scale.py), the job timeline, relaxations per job, lost and duplicated
relaxations; the per-candidate time of each chunk size against the smallest one's, measured in the same run.
On one node with 2 cores at most 2 one-core jobs run at once; ``--maximum`` above that leaves the rest pending.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def squeue() -> dict[str, str]:
    """Job id -> state of this user's dask-worker jobs."""
    out = subprocess.run(["squeue", "-h", "--name", "dask-worker", "-o", "%i %T"], capture_output=True, text=True)
    return dict(line.split() for line in out.stdout.splitlines() if line.strip())


def relaxations_by_job(url: str, cid: str) -> Counter:
    from sqlalchemy import select

    from tasks.store import transaction
    from tasks.store.tables import CandidateRow, RelaxationRow

    with transaction(url) as s:
        workers = s.scalars(select(RelaxationRow.worker).join(CandidateRow).where(CandidateRow.campaign_id == cid))
        return Counter(str((w or {}).get("slurm_job_id")) for w in workers)


class Watcher:
    """Polls squeue (job timeline) and cancels the busiest worker job once ``cancel_at`` relaxations are stored."""

    def __init__(self, url: str, cid: str, cancel_at: int | None) -> None:
        self.url, self.cid, self.cancel_at = url, cid, cancel_at
        self.t0 = time.perf_counter()
        self.jobs: dict[str, dict[str, float]] = {}
        self.running_max = 0
        self.cancelled: dict | None = None
        self._stop = threading.Event()

    def _tick(self) -> None:
        now = round(time.perf_counter() - self.t0, 1)
        states = squeue()
        self.running_max = max(self.running_max, sum(s == "RUNNING" for s in states.values()))
        for job, state in states.items():
            seen = self.jobs.setdefault(job, {"submitted_s": now})
            if state == "RUNNING":
                seen.setdefault("running_s", now)
            seen["last_seen_s"] = now
        for job, seen in self.jobs.items():
            if job not in states:
                seen.setdefault("gone_s", now)
        if self.cancel_at is not None and self.cancelled is None:
            done = relaxations_by_job(self.url, self.cid)
            if sum(done.values()) >= self.cancel_at:
                job, n = max(((j, n) for j, n in done.items() if j in states), key=lambda x: x[1], default=(None, 0))
                if job:
                    subprocess.run(["scancel", job], check=True)
                    self.cancelled = {"job": job, "at_s": now, "its_relaxations_stored": n,
                                      "stored_relaxations": sum(done.values())}
                    print(f"  scancel {job} at {now} s ({n} of {sum(done.values())} stored relaxations were its)",
                          flush=True)

    def loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - a failed poll is reported, the campaign goes on
                print(f"  watcher: {exc}", flush=True)
            self._stop.wait(1.0)

    @contextmanager
    def running(self):
        thread = threading.Thread(target=self.loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)


def check_store(url: str, cid: str) -> dict:
    """Chosen for relaxation vs relaxation rows: lost (chosen, never relaxed) and duplicated (relaxed twice)."""
    from sqlalchemy import func, select

    from tasks.store import transaction
    from tasks.store.tables import AcquisitionRow, CandidateRow, RelaxationRow

    with transaction(url) as s:
        chosen = set(s.scalars(select(AcquisitionRow.candidate_id).where(
            AcquisitionRow.campaign_id == cid, AcquisitionRow.stage == "relax", AcquisitionRow.chosen.is_(True))))
        rows = dict(s.execute(select(RelaxationRow.candidate_id, func.count(RelaxationRow.id)).join(CandidateRow).where(
            CandidateRow.campaign_id == cid).group_by(RelaxationRow.candidate_id)).all())
        statuses = Counter(s.scalars(select(CandidateRow.status).where(CandidateRow.campaign_id == cid)))
    return {"chosen": len(chosen), "relaxation_rows": sum(rows.values()), "lost": len(chosen - set(rows)),
            "relaxed_twice": sum(n > 1 for n in rows.values()), "relaxed_not_chosen": len(set(rows) - chosen),
            "statuses": dict(statuses)}


def one_chunk(size: int, chunk: int, maximum: int, cancel: bool, model: str, workdir: Path) -> dict:
    from benchmarks.scale import one_size

    logs = workdir / f"dask-logs-{chunk}"
    runner = ["runner.kind=dask-slurm", f"runner.dask_slurm.maximum={maximum}", "runner.dask_slurm.minimum=1",
              "runner.dask_slurm.cores=1", "runner.dask_slurm.memory=2GB", "runner.dask_slurm.walltime=02:00:00",
              "runner.dask_slurm.interface=lo", f"runner.dask_slurm.log_directory={logs}",
              # the filter's dedupe is quadratic in a round's same-formula proposals (scale.py measures it): off here,
              # where the subject is the relaxation on SLURM workers
              "filter.dedupe=false"]
    box: dict[str, Watcher] = {}

    @contextmanager
    def observe(url: str, cid: str):
        box["w"] = Watcher(url, cid, size // 4 if cancel else None)
        with box["w"].running():
            yield

    run = one_size(size, 1, "batched", chunk, model, extra=runner, observe=observe)
    watcher = box["w"]
    subprocess.run(["scancel", "--name", "dask-worker"], check=False)
    store = check_store(run["store_url"], run["campaign_id"])
    by_job = relaxations_by_job(run["store_url"], run["campaign_id"])
    return {**run, "chunk_size": chunk, "maximum": maximum, "jobs": watcher.jobs, "jobs_started": len(watcher.jobs),
            "jobs_running_at_once_max": watcher.running_max, "cancelled": watcher.cancelled,
            "relaxations_per_job": dict(by_job), **store}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--chunk-sizes", default="8,32")
    parser.add_argument("--maximum", type=int, default=4, help="Adaptive scaling: most worker jobs.")
    parser.add_argument("--no-cancel", action="store_true", help="Do not cancel a worker job mid-round.")
    parser.add_argument("--model", default=None, help="MACE model file (default: train the tests' tiny MACE).")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/matloop-scale"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "slurm_scale.json")
    args = parser.parse_args()
    if subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        print("error: no SLURM controller answers sinfo (start a single-node one with .ci/slurm.sh)", file=sys.stderr)
        raise SystemExit(2)

    from tests.mace_tiny import tiny_mace_model

    model = args.model or tiny_mace_model(args.workdir)
    runs = []
    for chunk in (int(c) for c in args.chunk_sizes.split(",")):
        run = one_chunk(args.size, chunk, args.maximum, not args.no_cancel, model, args.workdir)
        runs.append(run)
        print(f"chunk {chunk}: {run['flow_s']:.1f} s, {run['per_relaxed_s']:.3f} s per relaxed candidate, overhead "
              f"{100 * run['prefect_overhead_share']:.1f} %, {run['jobs_started']} jobs (at most "
              f"{run['jobs_running_at_once_max']} running), per job {run['relaxations_per_job']}, "
              f"chosen {run['chosen']}, lost {run['lost']}, relaxed twice {run['relaxed_twice']}, "
              f"statuses {run['statuses']}", flush=True)
    base = runs[0]["per_relaxed_s"]
    for run in runs:
        run["per_relaxed_ratio_to_first"] = run["per_relaxed_s"] / base
    result = {"benchmark": "slurm_scale", "date": datetime.now(timezone.utc).isoformat(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "size": args.size, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
