"""The store on real SQLite: campaigns, idempotent writes, transactions that leave nothing half-written."""


import pytest
from pymatgen.core import Lattice, Structure
from sqlalchemy import func, select

from tasks.candidate import Candidate, Provenance
from tasks.context import make_conditions
from tasks.errors import StoreError
from tasks.results import FilterVerdict, Rejection
from tasks.seeds import Seed, SeedSet
from tasks.store import Store, get_engine, round_reached, transaction
from tasks.store.secrets import without_password
from tasks.store.tables import CandidateRow, ProposalRow, VerdictRow
from tests.conftest import fresh_postgres_url, micro_config


def _cand(a: float, key: str) -> Candidate:
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
    prov = Provenance(generator="t", generator_identity="t", round_index=0, arm="x", key=key, conditions_hash="c")
    return Candidate.create(s, prov)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh store: SQLite in tmp, or the PostgreSQL named by MATLOOP_TEST_POSTGRES_URL (.ci/postgres.sh)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return fresh_postgres_url()


@pytest.fixture
def store_and_campaign(tmp_path, store_url):
    cfg = micro_config(tmp_path, **{"store.url": store_url})
    mg = Structure(Lattice.hexagonal(3.2, 5.2), ["Mg", "Mg"], [[1 / 3, 2 / 3, .25], [2 / 3, 1 / 3, .75]])
    seeds = SeedSet(known_phases=[Seed(id="mg", structure=mg, source="test")], templates=[])
    store = Store(cfg.store_url())
    return store, store.create_campaign(cfg, seeds), cfg


def test_campaign_rounds_and_seeds(store_and_campaign):
    store, cid, cfg = store_and_campaign
    stored = cfg.model_copy(update={"store": cfg.store.model_copy(update={"url": without_password(cfg.store_url())})})
    assert store.campaign(cid).status == "created" and store.config(cid) == stored  # never its password
    assert [r.status for r in store.rounds(cid)] == ["pending", "pending"]
    assert [s.id for s in store.seed_set(cid).known_phases] == ["mg"]
    with pytest.raises(StoreError, match="unknown campaign 'nope'"):
        store.campaign("nope")


def test_proposals_are_idempotent_per_structure_hash(store_and_campaign):
    store, cid, cfg = store_and_campaign
    batch = [_cand(4.2, "a"), _cand(4.3, "b"), _cand(4.2, "c")]  # a and c are the same structure
    cond = make_conditions(cfg.target, 0)
    store.save_proposals(cid, 0, batch, cond, {"generated": 3})
    store.save_proposals(cid, 0, batch, cond, {"generated": 3})  # a replay after a crash adds nothing
    with transaction(store.url) as s:
        assert s.scalar(select(func.count()).select_from(CandidateRow)) == 2
        assert s.scalar(select(func.count()).select_from(ProposalRow)) == 3
    assert store.round(cid, 0).status == "generated" and store.round(cid, 0).conditions["round_index"] == 0


def test_failed_transaction_writes_nothing(store_and_campaign):
    store, cid, cfg = store_and_campaign
    store.save_proposals(cid, 0, [_cand(4.2, "a")], make_conditions(cfg.target, 0), {})
    (pid, _, cand), = store.proposals(cid, 0)
    good = (pid, FilterVerdict(hash=cand.hash, passed=True))
    bad = (10_000, FilterVerdict(hash="x", passed=False, rejections=[Rejection(check="volume", detail="d")]))
    with pytest.raises(Exception):  # foreign key violation on the bogus proposal
        store.save_verdicts(cid, 0, [good, bad], {"accepted": 1})
    with transaction(store.url) as s:
        assert s.scalar(select(func.count()).select_from(VerdictRow)) == 0
    assert store.round(cid, 0).status == "generated"
    store.save_verdicts(cid, 0, [good], {"accepted": 1})
    assert [c.hash for c in store.accepted(cid, 0)] == [cand.hash]


def test_round_states():
    assert round_reached("relaxed", "filtered") and not round_reached("generated", "relaxed")
    with pytest.raises(StoreError, match="allowed"):
        round_reached("done", "pending")


def test_unsupported_store_url():
    with pytest.raises(StoreError, match="allowed dialects: sqlite, postgresql"):
        get_engine("mysql://u@h/db")


def test_a_store_without_the_lease_table_still_opens(tmp_path):
    """A store from just before the lease existed (no version table, no campaign_leases) is upgraded on open."""
    from sqlalchemy import create_engine, inspect

    from tasks.store.tables import Base

    path = tmp_path / "old.db"
    old = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(old, tables=[t for name, t in Base.metadata.tables.items() if name != "campaign_leases"])
    assert "campaign_leases" not in inspect(old).get_table_names()
    old.dispose()
    store = Store(f"sqlite:///{path}")
    assert store.campaigns() == [] and store.lease("none") is None
