"""Alembic environment: runs on the connection matloop hands over (tasks/store/schema.py), never from a URL of
its own, so a store's password stays where tasks/store/secrets.py keeps it."""

from alembic import context

from tasks.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("matloop migrations run through tasks.store.schema (matloop store upgrade), not the "
                       "alembic command line")
# batch mode: SQLite cannot ALTER most things in place, Alembic copies the table instead
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
