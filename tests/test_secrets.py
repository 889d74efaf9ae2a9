"""Store URLs: a password is split off where it enters and never printed or stored (tasks/store/secrets.py); a
bad store URL or file gets one error naming it (the PostgreSQL end-to-end check is in test_postgres_campaigns)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.errors import StoreError
from tasks.store.secrets import PASSWORD_ENV, adopt_credentials, connect_url, public_url, without_password

URL = "postgresql+psycopg://alice:p%40ss-w0rd@db.example:5432/matloop"


@pytest.fixture
def no_password_env():
    saved = os.environ.pop(PASSWORD_ENV, None)
    yield
    os.environ.pop(PASSWORD_ENV, None)
    if saved is not None:
        os.environ[PASSWORD_ENV] = saved


def test_a_password_moves_from_the_url_to_the_environment(no_password_env):
    assert public_url(URL) == "postgresql+psycopg://alice:***@db.example:5432/matloop"
    assert without_password(URL) == "postgresql+psycopg://alice@db.example:5432/matloop"
    assert PASSWORD_ENV not in os.environ  # those two have no side effect
    plain = adopt_credentials(URL)
    assert plain == without_password(URL) and "w0rd" not in plain and os.environ[PASSWORD_ENV] == "p@ss-w0rd"
    assert connect_url(plain).password == "p@ss-w0rd"  # the engine puts it back when it connects
    assert connect_url("sqlite:///x.db").password is None and public_url("sqlite:///x.db") == "sqlite:///x.db"
    assert adopt_credentials("sqlite:///x.db") == "sqlite:///x.db"
    assert "w0rd" not in public_url("postgresql://alice:w0rd@[::1")  # not even a URL: still masked
    with pytest.raises(StoreError, match=r"mask '\*\*\*'"):
        adopt_credentials(public_url(URL))


def test_bad_store_urls_and_files_are_named(tmp_path, monkeypatch):
    from tasks.store import Store

    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="not an SQLAlchemy URL"):
        Store("sqlite:/some/dir/x.db")  # one slash
    assert not (tmp_path / "sqlite:").exists()
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"not a database " * 400)
    with pytest.raises(StoreError, match=f"store file {damaged} is damaged"):
        Store(f"sqlite:///{damaged}").campaigns()
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StoreError, match=f"store file {empty} is empty"):
        Store(f"sqlite:///{empty}").campaigns()
    assert empty.stat().st_size == 0


@pytest.mark.parametrize("command", [["status"], ["candidates", "abc"], ["export", "abc", "-f", "csv"]])
def test_read_commands_do_not_create_a_store(tmp_path, command):
    from flows.cli import app

    missing = tmp_path / "nowhere" / "x.db"
    res = CliRunner().invoke(app, [*command, "--store", f"sqlite:///{missing}"])
    assert res.exit_code == 2 and f"no store at {missing}" in res.output.replace("\n", "")
    assert "Traceback" not in res.output and not missing.parent.exists()
    res = CliRunner().invoke(app, [*command, "--store", "sqlite:/one/slash.db"])
    assert res.exit_code == 2 and "not an SQLAlchemy URL" in res.output and not Path("sqlite:").exists()
