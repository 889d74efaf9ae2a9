"""Relaxations on Dask workers that are SLURM jobs (prefect-dask + dask-jobqueue) on the real single-node
SLURM of .ci/slurm.sh: each relaxation records its SLURM job; a worker job scancel-ed mid-round is replaced
(adaptive scaling), the round completes, and no relaxation is lost or duplicated in the store."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from sqlalchemy import func, select

from tests.test_dft_slurm import _slurm_up

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _slurm_up(), reason="no SLURM (start one with .ci/slurm.sh)")]


def test_relaxations_run_in_slurm_jobs_and_survive_a_cancelled_worker(prefect_server, tmp_path):
    from flows.campaign import run_campaign, start_campaign
    from tasks.store import Store, transaction
    from tasks.store.tables import CandidateRow, ProposalRow, RelaxationRow, VerdictRow
    from tests.conftest import micro_config

    cfg = micro_config(tmp_path, **{
        "rounds": 1, "relax.chunk_size": 1, "generator.n_per_round": 5,
        "runner.kind": "dask-slurm",
        "runner.dask_slurm": {"cores": 1, "memory": "1500MB", "walltime": "00:15:00", "minimum": 1, "maximum": 2,
                              "interface": "lo", "log_directory": str(tmp_path / "dask-logs")}})
    url = cfg.store_url()
    cid = start_campaign(cfg)
    cancelled: list[str] = []

    def cancel_one_worker_mid_round() -> None:
        deadline = time.time() + 400
        while time.time() < deadline and not cancelled:
            time.sleep(0.5)
            with transaction(url) as s:
                jobs = [w["slurm_job_id"] for w in s.scalars(select(RelaxationRow.worker)) if w]
            if jobs:  # a worker has finished at least one chunk: kill it while the round goes on
                subprocess.run(["scancel", jobs[0]], check=True)
                cancelled.append(jobs[0])

    killer = threading.Thread(target=cancel_one_worker_mid_round, daemon=True)
    killer.start()
    run_campaign(url, cid)
    killer.join(timeout=5)

    store = Store(url)
    assert store.campaign(cid).status == "completed" and store.round(cid, 0).status == "completed"
    assert cancelled, "no relaxation ran in a SLURM job"
    with transaction(url) as s:
        rows = s.execute(select(CandidateRow.hash, RelaxationRow.worker).join(RelaxationRow)).all()
        accepted = s.scalar(select(func.count(func.distinct(ProposalRow.candidate_id))).join(
            VerdictRow, VerdictRow.proposal_id == ProposalRow.id).where(VerdictRow.passed.is_(True)))
    hashes = [h for h, _ in rows]
    assert len(hashes) == len(set(hashes)) == accepted  # nothing lost, nothing duplicated
    jobs = {w["slurm_job_id"] for _, w in rows}
    assert None not in jobs and all(j.isdigit() for j in jobs)
    subprocess.run(["scancel", "--name", "dask-worker"], check=False)
