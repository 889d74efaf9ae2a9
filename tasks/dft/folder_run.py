"""Run one calculation folder: ``CALC_DIR/calc.json`` in, ``CALC_DIR/result.json`` out (written atomically).

The body of every DFT worker, whether a stand-alone process (:mod:`tasks.dft.worker`) or a child forked by the
pre-forking server (:mod:`tasks.dft.prefork`); it never raises: anything unexpected ends as a failed result
with its reason."""

from __future__ import annotations

import os
from pathlib import Path

RESULT = "result.json"


def run_folder(calc_dir: str | Path) -> int:
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
