"""Alembic migrations of the campaign store (see tasks/store/schema.py; `matloop store upgrade`)."""
