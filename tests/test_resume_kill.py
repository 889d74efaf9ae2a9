"""SIGKILL a campaign in the middle of a round, resume it, and lose or duplicate nothing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from tasks.store import Store, transaction
from tasks.store.tables import CampaignRow, CandidateRow, ProposalRow, RelaxationRow, VerdictRow

pytestmark = pytest.mark.slow
MATLOOP = [str(Path(sys.executable).with_name("matloop"))]


def _snapshot(url):
    with transaction(url) as s:
        return {
            "proposals": sorted(s.execute(select(ProposalRow.round_index, ProposalRow.position, CandidateRow.hash)
                                          .join(CandidateRow)).all()),
            "relaxations": sorted(s.execute(select(CandidateRow.hash, RelaxationRow.id, RelaxationRow.energy)
                                            .join(RelaxationRow)).all()),
            "verdicts": s.scalar(select(func.count()).select_from(VerdictRow)),
        }


def test_sigkill_mid_round_then_resume(tmp_path, prefect_server):
    cfg = {"name": "killme", "seed": 5, "rounds": 2, "output_dir": str(tmp_path / "out"),
           "target": {"chemical_system": "Mg-O", "max_atoms": 8},
           "seeds": {"known_phases": [{"template": "NaCl", "species": {"Na": "Mg", "Cl": "O"}}], "max_sites": 12},
           "generator": {"name": "substitution", "n_per_round": 5},
           "relax": {"backend": "chgnet", "max_steps": 60, "chunk_size": 1, "fmax": 0.1},
           "runner": {"kind": "threads", "max_workers": 1}}
    path = tmp_path / "killme.yaml"
    path.write_text(yaml.safe_dump(cfg))
    url = f"sqlite:///{tmp_path / 'out' / 'matloop.db'}"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(MATLOOP + ["run", "--config", str(path), "--no-progress"], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if not (tmp_path / "out" / "matloop.db").exists():
            continue
        with transaction(url) as s:
            n_relaxed = s.scalar(select(func.count()).select_from(RelaxationRow).join(CandidateRow)
                                 .where(CandidateRow.round_index == 0))
            n_accepted = s.scalar(select(func.count()).select_from(VerdictRow).where(VerdictRow.passed.is_(True)))
        if 1 <= n_relaxed < n_accepted:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = n_relaxed
            break
    proc.wait(timeout=30)
    assert killed_at is not None, f"the run never reached the middle of round 0: {proc.stdout.read().decode()[-3000:]}"
    store = Store(url)
    (campaign,) = store.campaigns()
    assert campaign.status == "running" and store.round(campaign.id, 0).status == "filtered"
    before = _snapshot(url)

    res = subprocess.run(MATLOOP + ["run", "--resume", campaign.id, "--store", url, "--no-progress"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert store.campaign(campaign.id).status == "completed"
    after = _snapshot(url)
    # nothing lost: every proposal and relaxation from before the kill is still there, unchanged
    assert set(before["proposals"]) <= set(after["proposals"])
    assert set(before["relaxations"]) <= set(after["relaxations"])
    # nothing duplicated: one proposal per position, one relaxation per candidate, 5 proposals per round
    assert len(after["proposals"]) == len(set(after["proposals"])) == 10
    relaxed_hashes = [h for h, _, _ in after["relaxations"]]
    assert len(relaxed_hashes) == len(set(relaxed_hashes))
    with transaction(url) as s:
        accepted = s.scalar(select(func.count(func.distinct(ProposalRow.candidate_id))).join(
            VerdictRow, VerdictRow.proposal_id == ProposalRow.id).where(VerdictRow.passed.is_(True)))
        assert s.scalar(select(func.count()).select_from(CampaignRow)) == 1
    assert len(relaxed_hashes) == accepted
    assert [r.status for r in store.rounds(campaign.id)] == ["completed", "completed"]
