"""A relaxation budget stops a campaign; campaigns in one store relax an identical structure once; learning off
is recorded. Real Prefect and CHGNet on the Mg-O micro-campaign (no shared data needed), on SQLite and on
PostgreSQL (.ci/postgres.sh; skipped without it)."""

import pytest

from flows.campaign import run_campaign, start_campaign
from tasks.context import relax_context
from tasks.store import Store
from tests.conftest import fresh_postgres_url, micro_config

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_budget_stops_the_campaign_and_a_twin_campaign_reuses_relaxations(prefect_server, tmp_path, dialect):
    url = {"store.url": fresh_postgres_url()} if dialect == "postgresql" else {}
    cfg = micro_config(tmp_path, **{"rounds": 4, "budget.relaxations": 3, "generator.n_per_round": 4,
                                    "relax.max_steps": 60, **url})
    store = Store(cfg.store_url())
    first = start_campaign(cfg)
    run_campaign(cfg.store_url(), first)
    rounds = store.rounds(first)
    assert store.campaign(first).status == "completed" and store.relaxation_count(first) == 3
    assert rounds[0].summary["over_budget"] >= 0 and rounds[-1].status == "pending"  # not run: budget spent
    assert sum(r.summary.get("relaxed", 0) for r in rounds) == 3
    assert all(r.summary["learning"] == "on" for r in rounds if r.status == "completed")

    twin = start_campaign(cfg.model_copy(update={"feedback": cfg.feedback.model_copy(update={"enabled": False})}))
    run_campaign(cfg.store_url(), twin)
    _, spec, shash = relax_context(store, twin)
    relaxed = store.relaxations(twin, spec.identity, shash)
    assert store.relaxation_count(twin) == 3
    reused = [r for c, r in relaxed if c.round_index == 0]  # round 0 is drawn before any feedback: the same
    assert reused and all(r.worker["reused_from_campaign"] == first for r in reused)
    assert all(r.summary["learning"] == "off" and r.feedback["arm_weights"] == {}
               for r in store.rounds(twin) if r.status == "completed")
