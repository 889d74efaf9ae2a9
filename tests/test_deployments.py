"""Operating matloop through a real Prefect server on 127.0.0.1 with API auth: the API refuses anonymous
calls, `matloop deploy` registers every deployment of deployments/prefect.yaml (campaign cron and config from
the campaign config), and a process worker runs the triggered campaign deployment into the store."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.prefect_server import BIN, http_status, prefect_server

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
AUTH = "matloop:s3cret"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    with prefect_server(tmp_path_factory.mktemp("prefect-home"), auth=AUTH) as (api, env):
        yield api, env


def test_api_refuses_calls_without_credentials(auth_server):
    api, env = auth_server
    assert http_status(f"{api}/health", None) == 200  # probes stay open (load balancers, k8s)
    assert http_status(f"{api}/admin/version", None) == 401
    assert http_status(f"{api}/admin/version", "matloop:wrong") == 401
    assert http_status(f"{api}/admin/version", AUTH) == 200
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
            try:
                worker.wait(timeout=120)
            except subprocess.TimeoutExpired:  # a loaded machine: a worker slow to shut down is not the test
                os.killpg(worker.pid, 9)
                worker.wait(timeout=30)
        assert state.is_completed(), (state, (tmp_path / "worker.log").read_text()[-4000:])
    store = Store(cfg.store_url())
    (campaign,) = store.campaigns()
    assert campaign.status == "completed" and store.round(campaign.id, 0).status == "completed"
