"""Pool workers skip the interpreter's final garbage collection, and still run their exit handlers."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_worker_freezes_the_collector_at_exit_and_runs_its_handlers(tmp_path):
    marker = tmp_path / "exited"
    code = f"""
import atexit, gc, sys
sys.path.insert(0, {str(ROOT)!r})
from tasks.workers import skip_exit_collection
atexit.register(lambda: open({str(marker)!r}, "w").write(str(gc.get_freeze_count() > 0)))
skip_exit_collection()
garbage = [[i] for i in range(1000)]
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert marker.read_text() == "True"  # the freeze ran first (last registered), then the earlier handler
