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


def _config(tmp_path, name: str, seed: int, rounds: int, n_per_round: int) -> dict:
    """A Mg-O substitution campaign relaxing one candidate per chunk on one thread (easy to catch mid-round)."""
    return {"name": name, "seed": seed, "rounds": rounds, "output_dir": str(tmp_path / "out"),
            "target": {"chemical_system": "Mg-O", "max_atoms": 8},
            "seeds": {"known_phases": [{"template": "NaCl", "species": {"Na": "Mg", "Cl": "O"}}], "max_sites": 12},
            "generator": {"name": "substitution", "n_per_round": n_per_round},
            "relax": {"backend": "chgnet", "max_steps": 60, "chunk_size": 1, "fmax": 0.1},
            "runner": {"kind": "threads", "max_workers": 1}}


def _kill_mid_round(tmp_path, prefect_server):
    """Start `matloop run`, SIGKILL it in the middle of round 0's relaxations; return what the tests need."""
    cfg = _config(tmp_path, "killme", seed=5, rounds=2, n_per_round=5)
    path = tmp_path / "killme.yaml"
    path.write_text(yaml.safe_dump(cfg))
    url = f"sqlite:///{tmp_path / 'out' / 'matloop.db'}"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(MATLOOP + ["run", "--config", str(path), "--no-progress"], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    killed_at, mid_polls = None, 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        db = tmp_path / "out" / "matloop.db"
        if not db.exists() or db.stat().st_size == 0:  # SQLite creates the file before it writes the schema
            continue
        with transaction(url) as s:
            n_relaxed = s.scalar(select(func.count()).select_from(RelaxationRow).join(CandidateRow)
                                 .where(CandidateRow.round_index == 0))
            n_accepted = s.scalar(select(func.count()).select_from(VerdictRow).where(VerdictRow.passed.is_(True)))
        mid_polls = mid_polls + 1 if 1 <= n_relaxed < n_accepted else 0
        # the second poll in the middle: a chunk writes the store, then Prefect persists its result a moment
        # later; a kill in between would leave no cached chunk for the retry test to find
        if mid_polls >= 2:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = n_relaxed
            break
    proc.wait(timeout=30)
    assert killed_at is not None, f"the run never reached the middle of round 0: {proc.stdout.read().decode()[-3000:]}"
    store = Store(url)
    (campaign,) = store.campaigns()
    assert campaign.status == "running" and store.round(campaign.id, 0).status == "acquired"  # mid-relax
    before = _snapshot(url)

    return url, env, store, campaign, before


def _check_nothing_lost_or_duplicated(url, store, campaign, before):
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


def test_sigkill_mid_round_then_resume(tmp_path, prefect_server):
    url, env, store, campaign, before = _kill_mid_round(tmp_path, prefect_server)
    res = subprocess.run(MATLOOP + ["run", "--resume", campaign.id, "--store", url, "--no-progress"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert store.campaign(campaign.id).status == "completed"
    _check_nothing_lost_or_duplicated(url, store, campaign, before)


def test_sigkill_then_prefect_flow_run_retry_skips_completed_work(tmp_path, prefect_server):
    """Prefect's own retry (the UI button / `prefect flow-run retry`) of the crashed campaign flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.states import Crashed

    url, env, store, campaign, before = _kill_mid_round(tmp_path, prefect_server)
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(
            any_=[f"campaign-{campaign.id}"])))
        client.set_flow_run_state(run.id, Crashed(message="worker killed"), force=True)  # what the UI shows
    prefect = str(Path(sys.executable).with_name("prefect"))
    res = subprocess.run([prefect, "flow-run", "retry", str(run.id), "--entrypoint",
                          "flows/campaign.py:discovery_campaign"], env=env, capture_output=True, text=True,
                         timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert store.campaign(campaign.id).status == "completed"
    _check_nothing_lost_or_duplicated(url, store, campaign, before)
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run.id).state.is_completed()
        rounds = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(
            any_=[f"{campaign.id}-round-0"])))
        chunks = [t for t in client.read_task_runs() if t.name.startswith("relax-chunk")
                  and t.flow_run_id in {r.id for r in rounds}]
    # chunks finished before the kill come back from their persisted results instead of running again
    assert any(t.state.name == "Cached" for t in chunks), sorted({t.state.name for t in chunks})


def test_one_live_runner_per_campaign(tmp_path, prefect_server):
    """A second `matloop run --resume` is refused while the first runner lives; once it is SIGKILLed, `status`
    says interrupted and a resume on this host takes over at once (the dead runner's pid is gone)."""
    cfg = _config(tmp_path, "leased", seed=2, rounds=3, n_per_round=4)
    cfg["runner"]["lease_s"] = 600
    path = tmp_path / "leased.yaml"
    path.write_text(yaml.safe_dump(cfg))
    url = f"sqlite:///{tmp_path / 'out' / 'matloop.db'}"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(MATLOOP + ["run", "--config", str(path), "--no-progress"], env=env,
                             start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    cid = None
    while time.time() < deadline and first.poll() is None and cid is None:
        time.sleep(0.5)
        db = tmp_path / "out" / "matloop.db"
        if db.exists() and db.stat().st_size > 0:  # SQLite creates the file before it writes the schema
            campaigns = Store(url).campaigns()
            if campaigns and Store(url).lease(campaigns[0].id) is not None:
                cid = campaigns[0].id
    assert cid is not None, first.stdout.read().decode()[-3000:] if first.poll() is not None else "no lease"
    second = subprocess.run(MATLOOP + ["run", "--resume", cid, "--store", url, "--no-progress"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 2 and f"campaign {cid} is being run by" in second.stdout + second.stderr
    assert "Traceback" not in second.stdout + second.stderr and first.poll() is None
    status = subprocess.run(MATLOOP + ["status", "--store", url], env=env, capture_output=True, text=True)
    assert "running" in status.stdout
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    status = subprocess.run(MATLOOP + ["status", "--store", url], env=env, capture_output=True, text=True)
    assert "interrupted" in status.stdout, status.stdout
    third = subprocess.run(MATLOOP + ["run", "--resume", cid, "--store", url, "--no-progress"], env=env,
                           capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert Store(url).campaign(cid).status == "completed" and Store(url).lease(cid) is None
    console = third.stdout + third.stderr  # a quiet console: library chatter went to the campaign's log
    assert "Warning" not in console and "CHGNet v" not in console and "Pauling" not in console
    log = (Path(Store(url).campaign(cid).campaign_dir) / "matloop.log").read_text()
    assert "CHGNet v" in log
