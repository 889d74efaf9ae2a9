"""The Prefect UI of a real server shows a finished campaign round and its artifacts, rendered by headless
Chromium (apt `chromium`); the screenshot is kept under test-artifacts/ (or $MATLOOP_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.prefect_server import BIN, prefect_server

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("chromium") is None,
                                                   reason="chromium is not installed (.ci/chromium.sh)")]
ROOT = Path(__file__).resolve().parents[1]


def _chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1400,1100", "--virtual-time-budget=20000", *args, url],
                          capture_output=True, text=True, timeout=120)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_ui_shows_the_round_and_its_artifacts(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.conftest import micro_config

    cfg = micro_config(tmp_path, **{"rounds": 1, "dft.backend": "none"})
    path = tmp_path / "micro.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    with prefect_server(tmp_path) as (api, env):
        res = subprocess.run([str(BIN / "matloop"), "run", "--config", str(path), "--no-progress"], env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            (run,) = [r for r in client.read_flow_runs() if r.name.endswith("-round-0")]
            cid = run.name.removesuffix("-round-0")
        page = f"{api.removesuffix('/api')}/runs/flow-run/{run.id}"
        dom = _chromium(page, "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert run.name in _text(dom.stdout) and "Completed" in _text(dom.stdout), dom.stdout[-3000:]
        base = api.removesuffix("/api")
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            arts = {a.key: a for a in client.read_artifacts() if a.flow_run_id == run.id}
        table = _text(_chromium(f"{base}/artifacts/artifact/{arts[f'matloop-{cid}-best-candidates'].id}",
                                "--dump-dom").stdout)
        summary = _text(_chromium(f"{base}/artifacts/artifact/{arts[f'matloop-{cid}-round-summary'].id}",
                                  "--dump-dom").stdout)
        for shown in (table, summary):
            assert run.name in shown  # the artifact page links back to the flow run
        assert "e_above_hull_eV_atom" in table and "MgO" in table, table[-2000:]
        assert f"Campaign {cid}, round 0" in summary and "S.U.N. rate" in summary, summary[-2000:]
        out = Path(os.environ.get("MATLOOP_TEST_ARTIFACTS", ROOT / "test-artifacts"))
        out.mkdir(parents=True, exist_ok=True)
        shot = out / "ui-round-summary.png"
        _chromium(f"{base}/artifacts/artifact/{arts[f'matloop-{cid}-round-summary'].id}", f"--screenshot={shot}")
        assert shot.is_file() and shot.stat().st_size > 10_000
