"""``matloop store``: the schema version of a store and its upgrade."""

from __future__ import annotations

import typer

from flows.cli_common import StoreOpt

store_app = typer.Typer(help="The campaign store's schema version and upgrade.", no_args_is_help=True)


@store_app.command("upgrade")
def upgrade(store: StoreOpt = None) -> None:
    """Upgrade the store to this matloop's schema (SQLite stores are also upgraded when opened, after a copy of
    the file is saved beside it; back up a PostgreSQL store with pg_dump first)."""
    from flows.cli_common import console, fail, store_url
    from tasks.errors import MatloopError
    from tasks.store import public_url
    from tasks.store.engine import upgrade_store
    from tasks.store.schema import HEAD

    try:
        url = store_url(store, None)
        found, backup = upgrade_store(url)
    except MatloopError as exc:
        fail(exc)
    what = {"current": f"already at schema {HEAD}", "new": f"new store created at schema {HEAD}"}
    console.print(f"store {public_url(url)}: " + what.get(found, f"upgraded from schema {found} to {HEAD}")
                  + (f" (the old file is saved as {backup})" if backup else ""))


@store_app.command("version")
def version(store: StoreOpt = None) -> None:
    """The store's schema revision and this matloop's."""
    from sqlalchemy import create_engine

    from flows.cli_common import console, fail, store_url
    from tasks.errors import MatloopError
    from tasks.store import public_url
    from tasks.store.schema import HEAD, store_revision
    from tasks.store.secrets import connect_url

    try:
        url = store_url(store, None)
        engine = create_engine(connect_url(url))
        try:
            with engine.connect() as connection:
                revision, has_tables = store_revision(connection)
        finally:
            engine.dispose()
    except MatloopError as exc:
        fail(exc)
    except Exception as exc:  # noqa: BLE001  (a damaged file or an unreachable server: one line)
        fail(RuntimeError(f"cannot read store {public_url(url)}: {str(getattr(exc, 'orig', exc)).strip()}"))
    found = revision or ("unversioned" if has_tables else "empty")
    console.print(f"store {public_url(url)}: schema {found}; this matloop: {HEAD}"
                  + ("" if found == HEAD else " (run `matloop store upgrade`)"))
