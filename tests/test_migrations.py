"""Store schema migrations (tasks/store/schema.py): a store of the oldest schema (matloop's first commit, no version
table) upgrades on SQLite (on open, with a backup) and on PostgreSQL (refused on open, `matloop store upgrade`),
its rows survive and today's code reads and writes it; the migrated schema equals the tables."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pymatgen.core import Lattice, Structure
from sqlalchemy import MetaData, create_engine, insert, text
from typer.testing import CliRunner

from flows.cli import app
from tasks.errors import StoreError
from tasks.store import Store, get_engine
from tasks.store.schema import HEAD, StoreUpgradeRequired, alembic_config, known_revisions, store_revision
from tasks.store.secrets import connect_url
from tasks.store.tables import Base

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _rocksalt() -> str:
    return json.dumps(Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"],
                                                [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict())


def _oldest_store(url: str, revision: str = "0001") -> None:
    """The schema at ``revision`` without a version table (as matloop wrote stores before migrations), holding one
    campaign with a round, a seed, a candidate, its proposal, verdict, converged relaxation and properties."""
    engine = create_engine(connect_url(url))
    with engine.begin() as c:
        command.upgrade(alembic_config(c), revision)
        c.execute(text("DROP TABLE alembic_version"))
        meta = MetaData()
        meta.reflect(c)
        t = meta.tables
        s = _rocksalt()
        c.execute(insert(t["campaigns"]).values(id="c0ld", name="old", status="completed", config={"name": "old"},
                                                config_hash="h", mlip="chgnet-0.3.0", mlip_spec=None,
                                                campaign_dir="/tmp/old", created_at=NOW, updated_at=NOW))
        c.execute(insert(t["rounds"]).values(campaign_id="c0ld", index=0, status="completed", summary={"generated": 1},
                                             updated_at=NOW))
        c.execute(insert(t["seeds"]).values(campaign_id="c0ld", seed_id="mp-1265", hash="s1", formula="MgO",
                                            structure=s, source="builtin", label="", relax_cell=True,
                                            known_phase=True, template=False))
        cand = c.execute(insert(t["candidates"]).values(
            campaign_id="c0ld", hash="abc", round_index=0, formula="MgO", nsites=2, structure=s,
            generator="substitution", provenance={"generator": "substitution"}, status="relaxed",
            relaxed_match="")).inserted_primary_key[0]
        prop = c.execute(insert(t["proposals"]).values(campaign_id="c0ld", round_index=0, position=0,
                                                       candidate_id=cand, key="k")).inserted_primary_key[0]
        c.execute(insert(t["verdicts"]).values(proposal_id=prop, campaign_id="c0ld", passed=True, rejections=[]))
        c.execute(insert(t["relaxations"]).values(candidate_id=cand, status="converged", reason="", mlip="chgnet-0.3.0",
                                                  settings_hash="set1", energy=-11.9, energy_per_atom=-5.95,
                                                  max_force=0.01, n_steps=12, volume_ratio=1.01, final_structure=s,
                                                  wall_time_s=0.5, created_at=NOW))
        for name, value, unit in (("energy_per_atom", -5.95, "eV/atom"), ("formation_energy_per_atom", -2.9, "eV/atom"),
                                  ("e_above_hull", 0.0, "eV/atom")):
            c.execute(insert(t["properties"]).values(candidate_id=cand, name=name, value=value, unit=unit,
                                                     source="mlip", model="chgnet-0.3.0", round_index=0,
                                                     updated_at=NOW))
    engine.dispose()


def _assert_current_and_readable(url: str) -> None:
    engine = get_engine(url)
    with engine.connect() as c:
        assert store_revision(c) == (HEAD, True)
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
    store = Store(url)
    assert [c.id for c in store.campaigns()] == ["c0ld"]
    ((cand, relax),) = store.relaxations("c0ld", "chgnet-0.3.0", "set1")
    assert (cand.hash, relax.energy_per_atom, relax.attempt, relax.worker) == ("abc", -5.95, 0, None)
    token = store.acquire_lease("c0ld", "host:1", 60.0)  # a table the oldest schema did not have
    assert token and store.lease("c0ld")[0] == "host:1"
    store.release_lease("c0ld", token)


def test_head_is_the_single_newest_revision():
    revisions = known_revisions()
    assert revisions[0] == HEAD and len(set(revisions)) == len(revisions) and revisions[-1] == "0001"


def test_a_new_store_is_stamped_and_matches_the_tables(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'new.db'}")
    with engine.connect() as c:
        assert store_revision(c) == (HEAD, True)
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []


def test_every_revision_from_nothing_builds_the_tables(tmp_path):
    """A change to tasks/store/tables.py without a migration fails here."""
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as c:
        command.upgrade(alembic_config(c), "head")
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
    engine.dispose()


def test_sqlite_store_of_the_oldest_schema_upgrades_on_open_with_a_backup(tmp_path):
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    _oldest_store(url)
    _assert_current_and_readable(url)
    (backup,) = tmp_path.glob("old.db.unversioned-*.bak")
    with sqlite3.connect(backup) as old:  # the copy is the store as it was: no version, no new tables
        tables = {r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "alembic_version" not in tables and "campaign_leases" not in tables
        assert old.execute("SELECT formula FROM candidates").fetchall() == [("MgO",)]
    result = CliRunner().invoke(app, ["store", "version", "--store", url])
    assert result.exit_code == 0 and f"schema {HEAD}; this matloop: {HEAD}" in result.output


def test_acquisitions_without_a_stage_are_rebuilt_as_relax_rankings(tmp_path):
    """Stores from between the acquire step and the DFT acquisition had acquisitions without ``stage`` and a
    narrower unique key."""
    url = f"sqlite:///{tmp_path / 'mid.db'}"
    _oldest_store(url)
    with sqlite3.connect(tmp_path / "mid.db") as c:
        c.execute("CREATE TABLE acquisitions (id INTEGER PRIMARY KEY, campaign_id VARCHAR(32) NOT NULL "
                  "REFERENCES campaigns(id) ON DELETE CASCADE, round_index INTEGER NOT NULL, candidate_id INTEGER "
                  "NOT NULL REFERENCES candidates(id) ON DELETE CASCADE, function VARCHAR(20) NOT NULL, "
                  "predicted_e_above_hull FLOAT NOT NULL, sigma FLOAT NOT NULL, value FLOAT NOT NULL, chosen BOOLEAN "
                  "NOT NULL, rank INTEGER, UNIQUE (campaign_id, round_index, candidate_id))")
        c.execute("CREATE INDEX ix_acquisitions_campaign_id ON acquisitions (campaign_id)")
        c.execute("INSERT INTO acquisitions (campaign_id, round_index, candidate_id, function, predicted_e_above_hull, "
                  "sigma, value, chosen, rank) VALUES ('c0ld', 0, 1, 'lcb', 0.05, 0.02, -0.07, 1, 0)")
    _assert_current_and_readable(url)
    rows = Store(url).acquisitions("c0ld")
    assert [(r["hash"], r["function"], r["chosen"], r["rank"]) for r in rows] == [("abc", "lcb", True, 0)]
    with get_engine(url).connect() as c:
        assert c.execute(text("SELECT stage FROM acquisitions")).scalars().all() == ["relax"]


def test_a_stored_config_keeps_only_its_own_generator_options(tmp_path):
    """Configs stored before the generator block became a union carry all four generators' options."""
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    _oldest_store(url)
    old = {"name": "old", "target": {"chemical_system": "Mg-O"},
           "generator": {"name": "diffusion", "n_per_round": 8, "property_guidance": 1.0,
                         "substitution": {"threshold": 1e-4}, "random": {"max_attempts": 60},
                         "diffusion": {"checkpoint": "builtin", "steps": 50}, "gan": {"checkpoint": "builtin"}}}
    with sqlite3.connect(tmp_path / "gen.db") as c:
        c.execute("UPDATE campaigns SET config = ?", (json.dumps(old),))
    _assert_current_and_readable(url)
    store = Store(url)
    assert store.campaign("c0ld").config["generator"] == {"name": "diffusion", "n_per_round": 8,
                                                          "property_guidance": 1.0,
                                                          "diffusion": {"checkpoint": "builtin", "steps": 50}}
    cfg = store.config("c0ld")
    assert cfg.generator.name == "diffusion" and cfg.generator.options.steps == 50 and cfg.target.chemical_system


def test_a_store_of_a_newer_matloop_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'future.db'}"
    get_engine(url)
    with get_engine(url).begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    get_engine.cache_clear()
    with pytest.raises(StoreError, match="revision '9999', written by a newer matloop"):
        get_engine(url)
    result = CliRunner().invoke(app, ["status", "--store", url])
    assert result.exit_code == 2 and "newer matloop" in result.output and "Traceback" not in result.output


def test_postgres_store_of_the_oldest_schema_is_refused_then_upgraded_by_the_command():
    from tests.conftest import drop_postgres_tables, fresh_postgres_url

    url = fresh_postgres_url()
    drop_postgres_tables(url)
    try:
        _oldest_store(url)
        get_engine.cache_clear()
        with pytest.raises(StoreUpgradeRequired, match=r"schema revision 'unversioned'.*matloop store upgrade"):
            get_engine(url)
        result = CliRunner().invoke(app, ["status", "--store", url])
        assert result.exit_code == 2 and "matloop store upgrade" in result.output
        assert "pg-S3cret" not in result.output  # the password never shows (.ci/postgres.sh)
        result = CliRunner().invoke(app, ["store", "upgrade", "--store", url])
        assert result.exit_code == 0, result.output
        assert f"upgraded from schema unversioned to {HEAD}" in result.output and "pg-S3cret" not in result.output
        _assert_current_and_readable(url)
        result = CliRunner().invoke(app, ["store", "upgrade", "--store", url])
        assert result.exit_code == 0 and f"already at schema {HEAD}" in result.output
    finally:
        fresh_postgres_url()
