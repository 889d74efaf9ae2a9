"""A DFT worker process: ``python -m tasks.dft.worker CALC_DIR`` runs ``CALC_DIR/calc.json`` and writes
``CALC_DIR/result.json`` (atomically). Started by both backends (:mod:`tasks.dft.backends`): as a process
of its own locally, and inside the job script on SLURM."""

from __future__ import annotations

import os
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


def main(calc_dir: str) -> int:
    from tasks.dft.run import CalcSpec, DFTOutcome, run_local

    path = Path(calc_dir)
    try:
        outcome = run_local(CalcSpec.model_validate_json((path / "calc.json").read_text()), path)
    except Exception as exc:  # anything unexpected still ends as a result with its reason
        outcome = DFTOutcome(status="failed", reason=f"worker error: {type(exc).__name__}: {exc}")
    tmp = path / (RESULT + ".tmp")
    tmp.write_text(outcome.model_dump_json(indent=1))
    os.replace(tmp, path / RESULT)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--serve":  # the pre-forking server of the local backend (tasks/dft/prefork.py)
        from tasks.dft.prefork import serve

        sys.exit(serve(Path(sys.argv[2])))
    sys.exit(main(sys.argv[1]))
