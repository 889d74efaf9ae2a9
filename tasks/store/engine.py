"""Engines and idempotent inserts for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from tasks.errors import StoreError
from tasks.store.schema import prepare_schema
from tasks.store.secrets import connect_url, public_url
from tasks.store.tables import Base

DIALECTS = ("sqlite", "postgresql")
BATCH = 500  # rows per INSERT statement (SQLite caps bound parameters)


@lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """One engine per URL and process; on first use a new store gets its tables and an old one is upgraded or
    refused (tasks/store/schema.py).

    SQLite files get WAL journaling, a 60 s busy timeout and foreign keys, so relaxation workers in other
    processes can write while the campaign reads.
    """
    return _open(url, upgrade=None)[0]


def upgrade_store(url: str) -> tuple[str, str | None]:
    """Bring a store (PostgreSQL included) to this matloop's schema: (what was found: new | current | unversioned
    | a revision, the SQLite backup made or None). `matloop store upgrade` runs this."""
    engine, found, backup = _open(url, upgrade=True)
    engine.dispose()
    get_engine.cache_clear()  # engines opened before the upgrade were refused or are stale
    return found, backup


def _open(url: str, upgrade: bool | None) -> tuple[Engine, str, str | None]:
    target = connect_url(url)
    dialect = target.get_backend_name()
    if dialect not in DIALECTS:
        raise StoreError(f"unsupported store URL {public_url(url)!r}; allowed dialects: {', '.join(DIALECTS)}")
    if dialect == "sqlite":
        path = target.database
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"store {url}: cannot create its folder {Path(path).parent} "
                                 f"({exc.strerror or exc})") from None
            if not os.access(Path(path).parent, os.W_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
                raise StoreError(f"store {url}: {path} is not writable")
            if Path(path).is_file() and Path(path).stat().st_size == 0:  # sqlite would silently start afresh
                raise StoreError(f"store file {path} is empty (0 bytes): it is damaged or not a matloop store; "
                                 "move it away to start a new store there")
        engine = create_engine(target, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()
    else:
        engine = create_engine(target, pool_pre_ping=True)
    try:
        found, backup = prepare_schema(engine, public_url(url), upgrade)
    except StoreError:
        engine.dispose()
        raise
    except DatabaseError as exc:
        engine.dispose()
        if dialect == "sqlite":
            raise StoreError(f"store file {target.database} is damaged or not an SQLite database "
                             f"({str(exc.orig).strip()}); restore it from a backup or move it away") from None
        raise StoreError(f"store {public_url(url)}: {str(exc.orig).strip()}") from None
    return engine, found, backup


def require_store(url: str) -> str:
    """``url``, if its store exists: a read-only command must not create an empty SQLite file (a server database
    is checked when it is opened)."""
    target = connect_url(url)
    if target.get_backend_name() == "sqlite" and target.database not in (None, "", ":memory:"):
        if not Path(target.database).is_file():
            raise StoreError(f"no store at {target.database} (start a campaign with `matloop run`, or name the "
                             "store with --store or MATLOOP_STORE_URL)")
    return url


@contextmanager
def transaction(url: str) -> Iterator[Session]:
    """A session inside one transaction: committed on success, rolled back on any exception."""
    with Session(get_engine(url), expire_on_commit=False) as session, session.begin():
        yield session


def insert_ignore(session: Session, table: type[Base], rows: Sequence[dict[str, Any]],
                  keys: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO NOTHING: idempotent writes keyed on a unique constraint."""
    rows = list(rows)
    for start in range(0, len(rows), BATCH):
        stmt = _insert(session)(table).values(rows[start:start + BATCH])
        session.execute(stmt.on_conflict_do_nothing(index_elements=list(keys)))


def upsert(session: Session, table: type[Base], rows: Sequence[dict[str, Any]], keys: Sequence[str],
           update: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET update-columns."""
    rows = list(rows)
    for start in range(0, len(rows), BATCH):
        stmt = _insert(session)(table).values(rows[start:start + BATCH])
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: getattr(stmt.excluded, c) for c in update})
        session.execute(stmt)


def _insert(session: Session):
    name = session.get_bind().dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise StoreError(f"unsupported dialect {name!r}; allowed: {', '.join(DIALECTS)}")
    return insert
