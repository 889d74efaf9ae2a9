"""A DFT worker process: ``python -m tasks.dft.worker CALC_DIR`` runs ``CALC_DIR/calc.json`` and writes
``CALC_DIR/result.json`` (atomically). Started by both backends (:mod:`tasks.dft.backends`): as a process
of its own locally, and inside the job script on SLURM."""

from __future__ import annotations

import sys
from pathlib import Path

from tasks.dft.folder_run import RESULT, run_folder


def write_spec(spec, calc_dir: Path) -> None:
    calc_dir.mkdir(parents=True, exist_ok=True)
    (calc_dir / "calc.json").write_text(spec.model_dump_json(indent=1))


def read_result(calc_dir: Path):
    from tasks.dft.run import DFTOutcome

    path = calc_dir / RESULT
    return DFTOutcome.model_validate_json(path.read_text()) if path.is_file() else None


def command(calc_dir: Path) -> list[str]:
    return [sys.executable, "-m", "tasks.dft.worker", str(calc_dir)]


if __name__ == "__main__":
    if sys.argv[1] == "--serve":  # the pre-forking server of the local backend (tasks/dft/prefork.py)
        from tasks.dft.prefork import serve

        sys.exit(serve(Path(sys.argv[2])))
    sys.exit(run_folder(sys.argv[1]))
