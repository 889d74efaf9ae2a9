"""Two micro-campaigns running at the same time on one PostgreSQL store (.ci/postgres.sh) do not interfere:
both complete, each keeps its own rows, and the MLIP reference energies they share are stored once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from tests.conftest import fresh_postgres_url

pytestmark = pytest.mark.slow
MATLOOP = str(Path(sys.executable).with_name("matloop"))


@pytest.fixture
def pg_url():
    return fresh_postgres_url()


def test_two_concurrent_campaigns_on_one_postgres_store(pg_url, prefect_server, tmp_path):
    from tasks.store import Store, transaction
    from tasks.store.tables import CandidateRow, ProposalRow, ReferenceEnergyRow, RelaxationRow
    from tests.conftest import micro_config

    env = {**os.environ, "PREFECT_API_URL": prefect_server, "OMP_NUM_THREADS": "1"}
    procs = []
    for i, generator in enumerate(("substitution", "random")):
        cfg = micro_config(tmp_path / f"c{i}", **{"name": f"pg-{i}", "rounds": 2, "generator.name": generator,
                                                   "store.url": pg_url})
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        procs.append(subprocess.Popen([MATLOOP, "run", "--config", str(path), "--no-progress"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[-2000:] for o in outputs]

    store = Store(pg_url)
    campaigns = {c.name: c for c in store.campaigns()}
    assert set(campaigns) == {"pg-0", "pg-1"} and all(c.status == "completed" for c in campaigns.values())
    with transaction(pg_url) as s:
        for c in campaigns.values():
            assert [r.status for r in store.rounds(c.id)] == ["completed", "completed"]
            generators = set(s.scalars(select(CandidateRow.generator).where(CandidateRow.campaign_id == c.id)))
            assert generators == {c.config["generator"]["name"]}  # no rows of the other campaign
            n_props = s.scalar(select(func.count()).select_from(ProposalRow).where(ProposalRow.campaign_id == c.id))
            assert n_props == sum(r.summary["generated"] for r in store.rounds(c.id))
            relaxed = list(s.scalars(select(CandidateRow.hash).join(RelaxationRow).where(
                CandidateRow.campaign_id == c.id)))
            assert len(relaxed) == len(set(relaxed)) > 0
        refs = s.execute(select(ReferenceEnergyRow.mlip, ReferenceEnergyRow.settings_hash,
                                ReferenceEnergyRow.hash)).all()
        assert len(refs) == len(set(refs)) > 0  # shared known phases relaxed once per MLIP and settings


def test_a_store_password_is_never_printed_or_stored(pg_url, prefect_server, tmp_path):
    """`matloop run --store URL-with-password`: the password is in no output, no stored config and no Prefect flow
    run parameter; without it in the URL, the environment variable is where the connection finds it."""
    from prefect.client.orchestration import get_client
    from sqlalchemy.engine import make_url

    from tasks.store import transaction
    from tasks.store.secrets import PASSWORD_ENV, without_password
    from tasks.store.tables import CampaignRow
    from tests.conftest import micro_config

    password = make_url(pg_url).password
    assert password and len(password) >= 8  # .ci/postgres.sh: a word found nowhere else
    cfg = micro_config(tmp_path, **{"name": "secret", "rounds": 1})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    env = {k: v for k, v in os.environ.items() if k not in (PASSWORD_ENV, "PGPASSWORD")}
    env.update(PREFECT_API_URL=prefect_server, OMP_NUM_THREADS="1")

    def matloop(*args, extra=None):
        res = subprocess.run([MATLOOP, *args], env={**env, **(extra or {})}, capture_output=True, text=True,
                             timeout=900)
        return res.returncode, res.stdout + res.stderr

    rc, out = matloop("run", "--config", str(path), "--store", pg_url, "--no-progress")
    assert rc == 0, out[-3000:]
    assert password not in out and "matloop@127.0.0.1" in out
    rc, out = matloop("status", "--store", pg_url)
    assert rc == 0 and password not in out and "secret" in out
    with transaction(pg_url) as s:
        configs = list(s.scalars(select(CampaignRow.config)))
    assert configs and password not in json.dumps(configs)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    params = json.dumps([r.parameters for r in runs], default=str)
    assert "matloop@127.0.0.1" in params and password not in params
    plain = without_password(pg_url)
    rc, out = matloop("status", "--store", plain)  # no password anywhere: refused, one line
    assert rc == 2 and "error:" in out and "Traceback" not in out and password not in out
    rc, out = matloop("status", "--store", plain, extra={PASSWORD_ENV: password})
    assert rc == 0 and "secret" in out
