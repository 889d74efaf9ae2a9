"""A real ``prefect server start`` on 127.0.0.1 for tests that need one (UI, auth, workers)."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, auth: str | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0  # not listening yet


@contextmanager
def prefect_server(home: Path, auth: str | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """Start a server with its own PREFECT_HOME; yields its API URL and the environment clients need."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": api}
    env.pop("PREFECT_API_AUTH_STRING", None)
    if auth:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and http_status(f"{api}/admin/version", auth) != 200:
            time.sleep(0.5)
        assert http_status(f"{api}/admin/version", auth) == 200, (home / "server.log").read_text()[-3000:]
        client_env = {k: v for k, v in env.items() if k != "PREFECT_SERVER_API_AUTH_STRING"}
        if auth:
            client_env["PREFECT_API_AUTH_STRING"] = auth
        yield api, client_env
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
