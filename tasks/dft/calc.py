"""Drive one stored DFT calculation to a final state: submit it (once), watch it, collect its result.

The store is the source of truth. A calculation already ``submitted``/``running`` is re-attached to (its job
is polled, never submitted again); a job that vanished without writing a result ends ``lost``. A submission cut
short before its job id was recorded is found by its folder, or made again when no job exists.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import task

from conf.dft import CP2KSettings, DFTConfig
from tasks.dft.backends import Backend, backend_for
from tasks.dft.run import CalcSpec, DFTOutcome, dft_environment
from tasks.dft.worker import RESULT, read_result, write_spec
from tasks.store import DFT_TERMINAL, Store
from tasks.store.tables import DFTCalcRow

LOST_STATES = ("CANCELLED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED")


def calc_spec(row: DFTCalcRow) -> CalcSpec:
    code = "vasp" if row.settings.get("code") == "vasp" else "cp2k"
    settings = CP2KSettings() if code == "vasp" else CP2KSettings.model_validate(
        {k: v for k, v in row.settings.items() if k != "code"})
    return CalcSpec(label=row.label, structure=json.loads(row.structure), code=code, settings=settings,
                    settings_hash=row.settings_hash)


def _finish(store: Store, row: DFTCalcRow, outcome: DFTOutcome) -> None:
    fields = outcome.model_dump(exclude={"status", "reason"})
    store.transition(row.id, outcome.status, ("submitted", "running"), reason=outcome.reason, **fields)


def _log_tail(calc_dir: Path, job_id: str) -> str:
    for name in (f"slurm-{job_id}.out", "worker.log"):
        path = calc_dir / name
        if path.is_file():
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            if lines:
                return " | ".join(lines[-3:])
    return ""


def submit(store: Store, row: DFTCalcRow, backend: Backend) -> DFTCalcRow:
    """Claim a queued calculation (compare-and-set, so only one process submits it) and submit it."""
    spec = calc_spec(row)
    if not store.transition(row.id, "submitted", "queued"):
        return store.dft_calc(row.id)  # someone else claimed it: watch theirs
    calc_dir = Path(row.calc_dir)
    write_spec(spec, calc_dir)
    (calc_dir / RESULT).unlink(missing_ok=True)  # a rerun must not pick up the previous attempt's result
    try:
        job_id = backend.submit(calc_dir, dft_environment(spec.settings, spec.code), row.label)
    except Exception as exc:
        store.transition(row.id, "failed", "submitted", reason=f"submission failed: {type(exc).__name__}: {exc}")
        return store.dft_calc(row.id)
    store.set_dft_job(row.id, job_id)
    return store.dft_calc(row.id)


def drive(store: Store, calc_id: int, cfg: DFTConfig, poll_s: float | None = None) -> DFTCalcRow:
    """Run or re-attach to calculation ``calc_id`` until it is completed, failed or lost."""
    row = store.dft_calc(calc_id)
    backend = backend_for(row.backend, cfg)
    poll = poll_s if poll_s is not None else (0.25 if row.backend == "local" else cfg.slurm.poll_seconds)
    if row.state == "queued":
        row = submit(store, row, backend)
    while row.state not in DFT_TERMINAL:
        calc_dir = Path(row.calc_dir)
        if row.job_id is None:  # claimed, but the submitting process died before recording the job
            if not _wait_for_job_id(store, row, poll):
                _recover_submission(store, row, backend)
            row = store.dft_calc(calc_id)
            continue
        job = backend.state(row.job_id)
        if job.state == "running" and row.state == "submitted":
            store.transition(row.id, "running", "submitted")
        elif job.state in ("finished", "gone"):
            outcome = read_result(calc_dir)
            if outcome is not None:
                _finish(store, row, outcome)
            elif job.state == "gone" or job.detail in LOST_STATES:
                store.transition(row.id, "lost", reason=f"job {row.job_id} {job.detail or 'vanished'} "
                                 f"without a result")
            else:
                tail = _log_tail(calc_dir, row.job_id)
                store.transition(row.id, "failed", reason=f"job {row.job_id} ended ({job.detail}) without a "
                                 f"result{': ' + tail if tail else ''}")
        row = store.dft_calc(calc_id)
        if row.state not in DFT_TERMINAL:
            time.sleep(poll)
    return row


def _recover_submission(store: Store, row: DFTCalcRow, backend: Backend) -> None:
    """The submitter died between claiming and recording: attach to the job it did submit (found by its folder),
    take the result it left, or, when no job was ever made, claim the calculation back and submit it once."""
    calc_dir = Path(row.calc_dir)
    job_id = backend.find(calc_dir)
    if job_id is not None:
        store.set_dft_job(row.id, job_id)
        return
    outcome = read_result(calc_dir)
    if outcome is not None:
        _finish(store, row, outcome)
    elif store.transition(row.id, "queued", "submitted"):  # compare-and-set: one resumed process resubmits
        submit(store, store.dft_calc(row.id), backend)


def _wait_for_job_id(store: Store, row: DFTCalcRow, poll: float, grace_s: float = 30.0) -> bool:
    """Another process may be between claiming and recording; give it a moment."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if store.dft_calc(row.id).job_id is not None:
            return True
        time.sleep(min(poll, 2.0))
    return False


@task(name="dft-calc", tags=["dft"], task_run_name="dft-{calc_id}")
def dft_calc_task(store_url: str, calc_id: int, cfg: DFTConfig) -> dict:
    """One calculation as a Prefect task; the ``dft`` tag's concurrency limit bounds how many run at once."""
    row = drive(Store(store_url), calc_id, cfg)
    return {"id": row.id, "label": row.label, "state": row.state, "reason": row.reason, "energy": row.energy}
