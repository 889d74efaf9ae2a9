"""Run one DFT calculation locally through atomate2 + jobflow and reduce its task document to a result.

Used directly by the ``local`` backend and, inside a SLURM job, by :mod:`tasks.dft.worker`.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pymatgen.core import Structure

from conf.base import Strict
from conf.dft import CP2KSettings
from tasks.candidate import structure_to_json
from tasks.dft.inputs import DFTInputError, cp2k_maker, vasp_flow
from tasks.dft.pmg_data import ensure_pmg_data_dir, prune, pruned_data_dir


class CalcSpec(Strict):
    """Everything needed to run a calculation, as JSON: written to ``calc.json`` in its directory."""

    label: str = Field(description="Candidate hash or 'element:<El>' for an elemental reference.")
    structure: dict = Field(description="pymatgen Structure.as_dict().")
    code: Literal["cp2k", "vasp"] = "cp2k"
    settings: CP2KSettings = Field(description="CP2K settings (VASP uses atomate2's MP input sets).")
    settings_hash: str


class DFTOutcome(Strict):
    status: Literal["completed", "failed"]
    reason: str = ""
    energy: float | None = Field(None, description="Total energy, eV.")
    energy_per_atom: float | None = Field(None, description="eV/atom.")
    final_structure: str | None = Field(None, description="pymatgen JSON.")
    forces: list | None = Field(None, description="eV/Å, one row per site.")
    stress: list | None = Field(None, description="kbar (CP2K/atomate2 convention), 3x3.")
    scf_converged: bool | None = None
    band_gap: float | None = Field(None, description="eV, when the output gives it.")
    wall_time_s: float = 0.0
    code_version: str = ""


def atomate2_cp2k_needs_dft_fix() -> bool:
    """atomate2 0.1.5 crashes parsing a non-spin-polarised run (``.upper()`` on ``Multiplicity: 1``)."""
    from atomate2.cp2k.schemas.calculation import CalculationInput

    try:
        CalculationInput.cleanup_dft({"Multiplicity": 1})
    except AttributeError:
        return True
    return False


@contextmanager
def cp2k_parsing_fix():
    """Swap in a str-safe ``cleanup_dft`` for the duration of a run, only while the upstream bug exists."""
    import atomate2.cp2k.schemas.calculation as calc
    from pydantic import field_validator

    if not atomate2_cp2k_needs_dft_fix():
        yield
        return
    original = calc.CalculationInput

    class CalculationInputStrSafe(original):  # type: ignore[misc, valid-type]
        @field_validator("dft", mode="before", check_fields=False)
        @classmethod
        def cleanup_dft(cls, dft: dict) -> dict:
            if any(str(v).upper() == "UKS" for v in dft.values()):
                dft["UKS"] = True
            return dft

    calc.CalculationInput = CalculationInputStrSafe
    try:
        yield
    finally:
        calc.CalculationInput = original


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def outcome_from_task_doc(doc: Any, wall: float) -> DFTOutcome:
    """The store's view of an atomate2 CP2K (or VASP) TaskDocument."""
    calc = doc.calcs_reversed[0] if doc.calcs_reversed else None
    out = doc.output
    scf = None
    if calc is not None and getattr(calc.output, "scf", None) is not None:
        scf = bool(calc.has_cp2k_completed == "successful") and bool(calc.output.scf)
    version = (f"CP2K {calc.cp2k_version}" if hasattr(calc, "cp2k_version")
               else f"VASP {getattr(calc, 'vasp_version', '')}".strip()) if calc is not None else ""
    if str(doc.state) != "successful" or out is None or not _finite(out.energy):
        return DFTOutcome(status="failed", reason=f"CP2K run {doc.state}", wall_time_s=wall, scf_converged=scf)
    return DFTOutcome(status="completed", energy=out.energy, energy_per_atom=out.energy_per_atom,
                      final_structure=structure_to_json(out.structure),
                      forces=[list(map(float, f)) for f in out.forces] if out.forces is not None else None,
                      stress=[list(map(float, r)) for r in out.stress] if out.stress is not None else None,
                      scf_converged=scf if scf is not None else True,
                      band_gap=out.bandgap if _finite(out.bandgap) else None, wall_time_s=wall,
                      code_version=version)


def dft_environment(settings: CP2KSettings, code: str = "cp2k") -> dict[str, str]:
    """Environment of a DFT worker process. pymatgen reads its CP2K data folder when it is imported, so
    calculations run in their own process (:mod:`tasks.dft.worker`) started with these variables."""
    if code == "vasp":  # VASP_CMD etc. come from the cluster's atomate2 settings
        return {"OMP_NUM_THREADS": "1"}
    full = ensure_pmg_data_dir(settings)
    return {"PMG_CP2K_DATA_DIR": str(pruned_data_dir(settings, full)), "MATLOOP_FULL_PMG_CP2K_DATA_DIR": str(full),
            "PMG_DEFAULT_CP2K_FUNCTIONAL": settings.functional, "OMP_NUM_THREADS": "1"}


def run_local(spec: CalcSpec, calc_dir: Path) -> DFTOutcome:
    """Run ``spec`` with jobflow's ``run_locally`` in ``calc_dir``; failures become an outcome, not an error.

    Call it in a process started with :func:`dft_environment` (the backends do).
    """
    from jobflow import run_locally

    start = time.perf_counter()
    calc_dir.mkdir(parents=True, exist_ok=True)
    structure = Structure.from_dict(spec.structure)
    if spec.code == "vasp":
        job = vasp_flow(structure)
    else:
        try:
            full = ensure_pmg_data_dir(spec.settings)
            prune(spec.settings, full, pruned_data_dir(spec.settings, full),
                  [el.symbol for el in structure.composition.elements])
            job = cp2k_maker(structure, spec.settings).make(structure)
        except DFTInputError as exc:
            return DFTOutcome(status="failed", reason=str(exc))
    errors = _JobErrors()
    jf_logger = logging.getLogger("jobflow")
    level = jf_logger.level
    jf_logger.addHandler(errors)
    jf_logger.setLevel(logging.INFO)
    try:
        with cp2k_parsing_fix():
            responses = run_locally(job, root_dir=calc_dir, create_folders=True, ensure_success=False, log=False)
    except Exception as exc:  # jobflow/custodian errors: a failed calculation, with the reason
        return DFTOutcome(status="failed", reason=f"{type(exc).__name__}: {exc}",
                          wall_time_s=time.perf_counter() - start)
    finally:
        jf_logger.removeHandler(errors)
        jf_logger.setLevel(level)
    last = job.jobs[-1] if hasattr(job, "jobs") else job  # a VASP flow ends with its static job
    response = responses.get(last.uuid, {}).get(1) if responses else None
    wall = time.perf_counter() - start
    if response is None or response.output is None:
        return DFTOutcome(status="failed", reason=errors.reason() or "the job produced no output", wall_time_s=wall)
    return with_band_gap(outcome_from_task_doc(response.output, wall), calc_dir)


def with_band_gap(outcome: DFTOutcome, calc_dir: Path) -> DFTOutcome:
    """``outcome`` with the gap of the CP2K band file its run wrote (:mod:`tasks.dft.bands`), if there is one;
    an unreadable file is logged and leaves the outcome as it was."""
    from tasks.dft.bands import BandFileError, band_gap_from_bs, find_band_file

    band_file = find_band_file(calc_dir) if outcome.status == "completed" else None
    if band_file is None:
        return outcome
    try:
        return outcome.model_copy(update={"band_gap": band_gap_from_bs(band_file)})
    except BandFileError as exc:
        logging.getLogger(__name__).warning("no band gap: %s", exc)
        return outcome


class _JobErrors(logging.Handler):
    """Collects the exceptions jobflow logs for failed jobs (it logs them instead of raising)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "failed with exception" in record.getMessage():
            lines = [ln for ln in record.getMessage().splitlines() if ln.strip()]
            self.messages.append(lines[-1].strip() if lines else record.getMessage())

    def reason(self) -> str:
        return self.messages[-1] if self.messages else ""
