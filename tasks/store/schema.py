"""Schema versions of a store: Alembic revisions in tasks/store/migrations, checked whenever a process first opens
a store.

- A new (empty) store gets today's tables and is stamped with the head revision.
- An SQLite store of an older matloop is upgraded on open, after a copy of the file is saved beside it.
- A PostgreSQL store of an older matloop is refused with the command that upgrades it (`matloop store upgrade`),
  so a server that many workers share changes only when a person says so (after their own backup).
- A store written by a newer matloop (a revision this one does not know) is refused.

Stores made before migrations existed carry no ``alembic_version`` table; they are treated as revision 0001,
whose successors add only what such a store lacks. Every change to tasks/store/tables.py comes with a revision
(tests/test_migrations.py compares the migrated schema with the tables).
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from tasks.errors import StoreError
from tasks.store.micro_tables import MicroCampaignRow  # noqa: F401 - the micro tables join Base.metadata
from tasks.store.tables import Base

HEAD = "0006"  # the newest revision in migrations/versions (a test keeps the two equal)
BASE = "0001"  # what an unversioned store is taken to be
MIGRATIONS = Path(__file__).parent / "migrations"
PG_LOCK_KEY = 0x6D61746C  # pg_advisory_lock key of matloop's schema changes ("matl")
log = logging.getLogger(__name__)


class StoreUpgradeRequired(StoreError):
    """The store's schema is older than this matloop's and must be upgraded by `matloop store upgrade`."""


def alembic_config(connection: Connection | None):
    """An Alembic configuration that runs on ``connection`` (no alembic.ini, no URL: the password stays out)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def known_revisions() -> list[str]:
    """Every revision in migrations/versions, newest first."""
    from alembic.script import ScriptDirectory

    return [script.revision for script in ScriptDirectory.from_config(alembic_config(None)).walk_revisions()]


def store_revision(connection: Connection) -> tuple[str | None, bool]:
    """(revision, has matloop tables): revision None for an unversioned store (or an empty database)."""
    tables = set(inspect(connection).get_table_names())
    revision = None
    if "alembic_version" in tables:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return revision, bool(tables & set(Base.metadata.tables))


def prepare_schema(engine: Engine, label: str, upgrade: bool | None = None) -> tuple[str, str | None]:
    """Bring the store behind ``engine`` to the head revision or refuse (see the module docstring); ``upgrade``
    True/False overrides the per-dialect default. Returns what was found (new | current | unversioned | the old
    revision) and the path of the SQLite backup made, if any."""
    sqlite = engine.dialect.name == "sqlite"
    upgrade = sqlite if upgrade is None else upgrade
    with _schema_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        revision, has_tables = store_revision(connection)
        if revision == HEAD:
            return "current", None
        if not has_tables:  # a new store: today's tables, stamped
            Base.metadata.create_all(connection)
            _stamp(connection, HEAD)
            return "new", None
        if revision is not None and revision not in known_revisions():
            raise StoreError(f"store {label} has schema revision {revision!r}, written by a newer matloop (this one "
                             f"knows up to {HEAD!r}): upgrade matloop to open it")
        found = revision or "unversioned"
        if not upgrade:
            raise StoreUpgradeRequired(
                f"store {label} has schema revision {found!r}; this matloop needs {HEAD!r}. Back it up, then run "
                f"`matloop store upgrade --store '{label}'`")
        backup = _backup_sqlite(engine, found) if sqlite else None
        if revision is None:
            _stamp(connection, BASE)
        from alembic import command

        command.upgrade(alembic_config(connection), HEAD)
        log.warning("store %s upgraded from schema %s to %s%s", label, found, HEAD,
                    f" (the old file is saved as {backup})" if backup else "")
        return found, str(backup) if backup else None


def _stamp(connection: Connection, revision: str) -> None:
    from alembic import command

    command.stamp(alembic_config(connection), revision)


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """Serialise schema checks of one SQLite file across processes (a campaign and its workers open it together);
    PostgreSQL takes a transaction-scoped advisory lock inside prepare_schema instead."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        yield
        return
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _backup_sqlite(engine: Engine, revision: str) -> Path:
    """A consistent copy of the store file (SQLite's backup API, so WAL contents are included) beside it."""
    source = Path(engine.url.database)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = source.with_name(f"{source.name}.{revision}-{stamp}.bak")
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target
