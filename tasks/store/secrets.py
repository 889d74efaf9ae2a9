"""A store URL's password never leaves the process that was given it.

The recommended deployment (PostgreSQL) puts a password in the store URL. matloop prints store URLs, passes them
to Prefect flows as parameters (kept in the Prefect database and shown in the UI) and stores the campaign's config.
So a URL is split once, where it enters (the CLI, :class:`tasks.store.Store`): the password goes to the
environment variable :data:`PASSWORD_ENV` of this process (inherited by its task worker processes) and everything
else sees the URL without it. The engine puts it back only when it connects (:func:`connect_url`). On a cluster,
give the workers the password the same way (``MATLOOP_STORE_PASSWORD`` in the worker's environment, or
PostgreSQL's own ``PGPASSWORD`` / ``~/.pgpass``, which the driver reads when the URL has no password).
"""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tasks.errors import StoreError

PASSWORD_ENV = "MATLOOP_STORE_PASSWORD"
MASK = "***"


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise StoreError(f"store URL {public_url(url)!r} is not an SQLAlchemy URL (e.g. sqlite:///path/to/store.db "
                         "or postgresql+psycopg://user@host/db)") from exc


def public_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe to print, log and store."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # not a URL: hide whatever sits between "://user:" and "@"
        head, sep, rest = url.partition("://")
        if sep and "@" in rest and ":" in rest.split("@", 1)[0]:
            user = rest.split("@", 1)[0].split(":", 1)[0]
            return f"{head}://{user}:{MASK}@{rest.split('@', 1)[1]}"
        return url
    return parsed.render_as_string(hide_password=True) if parsed.password is not None else url


def without_password(url: str) -> str:
    """``url`` with no password at all (no side effect): what a campaign's stored config keeps."""
    parsed = _parse(url)
    return url if parsed.password is None else parsed._replace(password=None).render_as_string(hide_password=False)


def adopt_credentials(url: str) -> str:
    """The URL without its password; the password (if there was one) moves to :data:`PASSWORD_ENV` of this
    process, where :func:`connect_url` finds it. A URL without a password is returned as given."""
    parsed = _parse(url)
    if parsed.password is None:
        return url
    if str(parsed.password) == MASK:
        raise StoreError(f"store URL {public_url(url)!r} carries the mask {MASK!r} as its password: give the real "
                         f"password in the URL or in the environment variable {PASSWORD_ENV}")
    os.environ[PASSWORD_ENV] = str(parsed.password)
    return without_password(url)


def connect_url(url: str) -> URL:
    """What the engine connects to: ``url``, with the password from :data:`PASSWORD_ENV` when ``url`` names a
    server user but no password (SQLite has neither)."""
    parsed = _parse(url)
    password = os.environ.get(PASSWORD_ENV)
    if parsed.password is None and password and parsed.username and not parsed.drivername.startswith("sqlite"):
        return parsed.set(password=password)
    return parsed
