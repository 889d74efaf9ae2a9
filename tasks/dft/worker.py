"""A DFT worker process: ``python -m tasks.dft.worker CALC_DIR`` runs ``CALC_DIR/calc.json`` and writes
``CALC_DIR/result.json`` (atomically). Used by the local backend (subprocess) and inside SLURM jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RESULT = "result.json"


def write_spec(spec, calc_dir: Path) -> None:
    calc_dir.mkdir(parents=True, exist_ok=True)
    (calc_dir / "calc.json").write_text(spec.model_dump_json(indent=1))


def read_result(calc_dir: Path):
    from tasks.dft.run import DFTOutcome

    path = calc_dir / RESULT
    return DFTOutcome.model_validate_json(path.read_text()) if path.is_file() else None


def command(calc_dir: Path) -> list[str]:
    return [sys.executable, "-m", "tasks.dft.worker", str(calc_dir)]


def run_in_subprocess(spec, calc_dir: Path, timeout_s: float | None = None):
    """Run one calculation in a fresh worker process (the ``local`` backend); returns its DFTOutcome."""
    from tasks.dft.run import DFTOutcome, dft_environment

    write_spec(spec, calc_dir)
    env = {**os.environ, **dft_environment(spec.settings)}
    try:
        proc = subprocess.run(command(calc_dir), env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return DFTOutcome(status="failed", reason=f"timed out after {timeout_s} s")
    result = read_result(calc_dir)
    if result is None:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        return DFTOutcome(status="failed", reason=f"worker exited {proc.returncode}: {' | '.join(tail)}")
    return result


def main(calc_dir: str) -> int:
    from tasks.dft.run import CalcSpec, run_local

    path = Path(calc_dir)
    spec = CalcSpec.model_validate_json((path / "calc.json").read_text())
    outcome = run_local(spec, path)
    tmp = path / (RESULT + ".tmp")
    tmp.write_text(outcome.model_dump_json(indent=1))
    os.replace(tmp, path / RESULT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
