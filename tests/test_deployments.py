"""Operating matloop through a real Prefect server on 127.0.0.1 with API auth: the API refuses anonymous
calls, `matloop deploy` registers every deployment of deployments/prefect.yaml (campaign cron and config from
the campaign config), and a process worker runs the triggered campaign deployment into the store."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AUTH = "matloop:s3cret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, auth: str | None) -> int:
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


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_API_AUTH_STRING": AUTH,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": api}
    env.pop("PREFECT_API_AUTH_STRING", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline and _get(f"{api}/health", AUTH) != 200:
        time.sleep(0.5)
    assert _get(f"{api}/health", AUTH) == 200, (home / "server.log").read_text()[-3000:]
    client_env = {**env, "PREFECT_API_AUTH_STRING": AUTH}
    client_env.pop("PREFECT_SERVER_API_AUTH_STRING")
    yield api, client_env
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)


def test_api_refuses_calls_without_credentials(auth_server):
    api, env = auth_server
    assert _get(f"{api}/health", None) == 200  # probes stay open (load balancers, k8s)
    assert _get(f"{api}/admin/version", None) == 401
    assert _get(f"{api}/admin/version", "matloop:wrong") == 401
    assert _get(f"{api}/admin/version", AUTH) == 200
    ok = subprocess.run([str(BIN / "prefect"), "work-pool", "ls"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    anon = subprocess.run([str(BIN / "prefect"), "work-pool", "ls"], capture_output=True, text=True,
                          env={k: v for k, v in env.items() if k != "PREFECT_API_AUTH_STRING"})
    assert anon.returncode != 0


def test_deploy_then_a_worker_runs_the_campaign_deployment(auth_server, tmp_path):
    from tasks.store import Store
    from tests.conftest import micro_config

    api, env = auth_server
    cfg = micro_config(tmp_path, **{"rounds": 1, "schedule.cron": "30 3 * * 1"})
    config_path = tmp_path / "micro.yaml"
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    run = lambda *args, **kw: subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True,  # noqa: E731
                                             cwd=ROOT, **kw)
    res = run(BIN / "prefect", "work-pool", "create", "matloop", "--type", "process")
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(BIN / "matloop", "deploy", "--config", config_path)
    assert res.returncode == 0, res.stdout + res.stderr

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: AUTH}):
        with get_client(sync_client=True) as client:
            names = {f"{client.read_flow(d.flow_id).name}/{d.name}" for d in client.read_deployments()}
            assert {"matloop-scheduled-campaign/campaign", "matloop-resume-campaign/resume",
                    "matloop-rerun-failed/rerun-failed", "matloop-dft-rerun/dft-rerun",
                    "matloop-lab-ingest/lab-ingest", "matloop-train-generator/train"} <= names
            dep = client.read_deployment_by_name("matloop-scheduled-campaign/campaign")
            assert dep.parameters["config_path"] == str(config_path)
            assert [s.schedule.cron for s in dep.schedules] == ["30 3 * * 1"]
            flow_run = client.create_flow_run_from_deployment(dep.id)
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "matloop"], env=env, cwd=ROOT,
                                  stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.time() + 400
            with get_client(sync_client=True) as client:
                while time.time() < deadline:
                    state = client.read_flow_run(flow_run.id).state
                    if state.is_final():
                        break
                    time.sleep(2)
        finally:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=60)
        assert state.is_completed(), (state, (tmp_path / "worker.log").read_text()[-4000:])
    store = Store(cfg.store_url())
    (campaign,) = store.campaigns()
    assert campaign.status == "completed" and store.round(campaign.id, 0).status == "completed"
