"""Two micro-campaigns running at the same time on one PostgreSQL store (.ci/postgres.sh) do not interfere:
both complete, each keeps its own rows, and the MLIP reference energies they share are stored once."""

from __future__ import annotations

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
