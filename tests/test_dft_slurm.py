"""The ``slurm`` DFT backend on a real single-node SLURM (``.ci/slurm.sh``) running real CP2K: a submitted
calculation completes; an ``scancel``-ed one ends ``lost`` and reruns; a job whose id was never recorded is found
by its folder; a campaign killed while its job runs re-attaches to that job when resumed, without submitting it
again (and a calculation whose submission the kill cut short is found or submitted once)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pymatgen.core import Lattice, Structure

from conf.dft import DFTConfig
from tasks.dft.backends import SlurmBackend
from tasks.dft.calc import drive, submit
from tasks.store import Store
from tests.prefect_server import prefect_server


def _slurm_up() -> bool:
    if shutil.which("sbatch") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return "UP" in ping.stdout


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not _slurm_up(), reason="no SLURM controller (start one with .ci/slurm.sh)"),
              pytest.mark.skipif(shutil.which("cp2k.psmp") is None, reason="CP2K is not installed")]
MATLOOP = str(Path(sys.executable).with_name("matloop"))
SLURM = DFTConfig(backend="slurm", slurm={"walltime": "00:10:00", "memory": "1500M", "poll_seconds": 1})


def _queue(store: Store, tmp_path: Path, label: str) -> int:
    s = Structure(Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    settings = {"code": "cp2k", **SLURM.cp2k.model_dump(mode="json")}
    return store.queue_dft([dict(campaign_id="slurm", label=label, kind="candidate", round_index=0,
                                 structure=json.dumps(s.as_dict()), settings=settings, settings_hash="cp2k-slurm",
                                 backend="slurm", calc_dir=str(tmp_path / label))])[0]


def _wait_state(store: Store, calc_id: int, backend: SlurmBackend, want: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if backend.state(store.dft_calc(calc_id).job_id).state == want:
            return
        time.sleep(0.5)
    raise AssertionError(f"job of calculation {calc_id} never reached {want}")


def test_submitted_calculation_completes(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    row = drive(store, _queue(store, tmp_path, "mgo"), SLURM)
    assert row.state == "completed", row.reason
    assert row.job_id.isdigit() and row.energy < 0 and row.code_version.startswith("CP2K")
    assert (tmp_path / "mgo" / f"slurm-{row.job_id}.out").is_file()
    script = (tmp_path / "mgo" / "job.sh").read_text()
    assert "PMG_CP2K_DATA_DIR" in script and script.rstrip().endswith(str(tmp_path / "mgo"))


def test_scancelled_job_ends_lost_and_is_rerunnable(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    backend = SlurmBackend(SLURM.slurm)
    cid = _queue(store, tmp_path, "cancel-me")
    row = submit(store, store.dft_calc(cid), backend)
    _wait_state(store, cid, backend, "running")
    subprocess.run(["scancel", row.job_id], check=True)
    row = drive(store, cid, SLURM)
    assert row.state == "lost" and "CANCELLED" in row.reason and row.job_id
    store.requeue_dft(cid, row.settings, row.settings_hash, "slurm")
    again = drive(store, cid, SLURM)
    assert again.state == "completed" and again.job_id != row.job_id
    assert again.history[0]["state"] == "lost" and again.history[0]["job_id"] == row.job_id


def test_a_job_whose_id_was_never_recorded_is_found_by_its_folder(tmp_path):
    calc_dir = tmp_path / "calc"
    calc_dir.mkdir()
    sub = subprocess.run(["sbatch", "--parsable", f"--chdir={calc_dir}", f"--output={calc_dir / 'slurm-%j.out'}",
                          "--mem=100M", "--time=00:02:00", "--wrap", "sleep 60"], capture_output=True, text=True)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().split(";")[0]
    backend = SlurmBackend(SLURM.slurm)
    try:
        assert backend.find(calc_dir) == job  # in the queue, by its working directory
        assert backend.find(tmp_path) is None
    finally:
        backend.cancel(job)
    (calc_dir / f"slurm-{job}.out").touch()
    assert backend.find(calc_dir) == job  # gone from the queue: by the log it wrote


def test_killed_campaign_reattaches_to_its_running_job(tmp_path):
    # a real server: its lease repossessor frees the "dft" tag slots the killed run held (60 s leases);
    # the test harness runs no services, so a resumed run there would wait for them forever
    with prefect_server(tmp_path) as (_, env):
        _kill_and_resume(tmp_path, env)


def _kill_and_resume(tmp_path, env):
    out = tmp_path / "out"
    cfg = {"name": "slurm-resume", "seed": 3, "rounds": 1, "output_dir": str(out),
           "target": {"chemical_system": "Mg-O", "max_atoms": 8},
           "seeds": {"known_phases": [{"template": "NaCl", "species": {"Na": "Mg", "Cl": "O"}}], "max_sites": 12},
           "generator": {"name": "substitution", "n_per_round": 4},
           "relax": {"backend": "chgnet", "max_steps": 80, "chunk_size": 3, "fmax": 0.1},
           "runner": {"kind": "threads", "max_workers": 2},
           "dft": {"backend": "slurm", "concurrency": 3, "selection": {"per_round": 1},
                   "slurm": {"walltime": "00:10:00", "memory": "1500M", "poll_seconds": 1},
                   "references_dir": str(tmp_path / "refs")}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    url = f"sqlite:///{out / 'matloop.db'}"
    env = {**env, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([MATLOOP, "run", "--config", str(path), "--no-progress"], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    store = Store(url)
    deadline, victim = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None and victim is None:
        time.sleep(0.5)
        db = out / "matloop.db"
        if db.exists() and db.stat().st_size > 0 and store.campaigns():  # the file exists before its schema
            cid = store.campaigns()[0].id
            running = [r for r in store.dft_calcs(cid, ["submitted", "running"]) if r.job_id]
            if running:
                victim = running[0]
                os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert victim is not None, proc.stdout.read().decode()[-3000:]
    squeue = subprocess.run(["squeue", "-h", "-j", victim.job_id, "-o", "%T"], capture_output=True, text=True)
    assert squeue.stdout.strip() in ("PENDING", "RUNNING"), "the job should outlive the killed campaign"

    res = subprocess.run([MATLOOP, "run", "--resume", cid, "--store", url, "--no-progress"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    row = store.dft_calc(victim.id)
    assert row.state == "completed" and row.job_id == victim.job_id and not row.history
    for calc in store.dft_calcs(cid, with_references=True):
        assert calc.state == "completed", (calc.label, calc.reason)
        assert len(list(Path(calc.calc_dir).glob("slurm-*.out"))) == 1  # each calculation submitted once
    assert store.round(cid, 0).summary["dft"]["completed"] == 1
