"""MLIP relaxation: ASE FIRE on a FrechetCellFilter, failures recorded, never raised.

A relaxation ends ``converged`` or with one failure status: ``nan`` (non-finite energy or forces),
``exploded`` (volume changed by more than ``max_volume_ratio`` either way, or atoms closer than the
distance floor), ``not_converged`` (``max_steps`` reached) or ``error`` (the calculator raised).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
from prefect import task
from pymatgen.core import Structure

from conf.schema import RelaxConfig
from tasks.candidate import collapse_reason, normalize_structure, structure_to_json
from tasks.context import relax_context, relax_settings_hash
from tasks.mlip import MLIPSpec, load_calculator
from tasks.results import RelaxChunkRecord, RelaxResult, WarmUpRecord


def _finite(atoms) -> bool:
    return math.isfinite(atoms.get_potential_energy()) and bool(np.isfinite(atoms.get_forces()).all())


def relax_structure(structure: Structure, calc, cfg: RelaxConfig, *, hash: str, mlip: str,
                    relax_cell: bool = True) -> RelaxResult:
    """Relax one structure with ``calc``; every outcome is a :class:`RelaxResult`."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE, LBFGS
    from pymatgen.io.ase import AseAtomsAdaptor

    optimizers = {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}

    start = time.perf_counter()
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calc
    v0 = atoms.get_volume()
    status, reason, steps = "converged", "", 0
    try:
        if not _finite(atoms):
            status, reason = "nan", "non-finite energy or forces at the start"
        else:
            opt = optimizers[cfg.optimizer](FrechetCellFilter(atoms) if relax_cell else atoms, logfile=None,
                                            maxstep=cfg.max_step)
            converged = False
            for converged in opt.irun(fmax=cfg.fmax, steps=cfg.max_steps):
                ratio = atoms.get_volume() / v0
                if not _finite(atoms):
                    status, reason = "nan", f"non-finite energy or forces at step {opt.nsteps}"
                    break
                if not 1 / cfg.max_volume_ratio <= ratio <= cfg.max_volume_ratio:
                    status, reason = "exploded", f"volume ratio {ratio:.2f} at step {opt.nsteps}"
                    break
            steps = opt.nsteps
            if status == "converged" and not converged:
                status, reason = "not_converged", f"fmax {cfg.fmax} eV/Å not reached in {cfg.max_steps} steps"
    except Exception as exc:  # calculator failures (graph building, OOM, ...) become a recorded error
        return RelaxResult(hash=hash, status="error", reason=f"{type(exc).__name__}: {exc}", mlip=mlip,
                           settings_hash=relax_settings_hash(cfg), n_steps=steps,
                           wall_time_s=time.perf_counter() - start)
    final = normalize_structure(AseAtomsAdaptor.get_structure(atoms))
    if status == "converged" and (collapsed := collapse_reason(final)):
        status, reason = "exploded", collapsed
    finite = status != "nan"
    energy = float(atoms.get_potential_energy()) if finite else None
    return RelaxResult(
        hash=hash, status=status, reason=reason, energy=energy,
        energy_per_atom=energy / len(atoms) if energy is not None else None,
        max_force=float(np.linalg.norm(atoms.get_forces(), axis=1).max()) if finite else None,
        n_steps=steps, volume_ratio=float(atoms.get_volume() / v0), mlip=mlip,
        final_structure=structure_to_json(final) if finite else None,
        settings_hash=relax_settings_hash(cfg), wall_time_s=time.perf_counter() - start)


def worker_info() -> dict:
    """Where this process runs (recorded with each relaxation): host, pid and the SLURM job, if any."""
    import os
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def relax_many(items: Sequence[tuple[str, Structure, bool]], spec: MLIPSpec, cfg: RelaxConfig) -> list[RelaxResult]:
    """Relax ``(hash, structure, relax_cell)`` items with one loaded model, by ``cfg.engine``."""
    where = worker_info()
    if cfg.engine == "batched":
        from tasks.relax_batched import relax_batched

        return [r.model_copy(update={"worker": where}) for r in relax_batched(items, spec, cfg)]
    calc = load_calculator(spec)
    return [relax_structure(s, calc, cfg, hash=h, mlip=spec.identity, relax_cell=rc).model_copy(
        update={"worker": where}) for h, s, rc in items]


@task(name="load-mlip")
def load_mlip_task(spec: MLIPSpec, engine: str = "ase") -> WarmUpRecord:
    """Load the MLIP in a worker ahead of the first relaxation (workers keep it for the campaign): the ASE
    calculator, or TorchSim's model for ``engine='batched'``."""
    import psutil

    from tasks.logs import route_library_output

    route_library_output()  # this worker's library warnings and the model's banner: to the campaign log
    start = time.time()
    if engine == "batched":
        from tasks.relax_batched import load_batched_model

        load_batched_model(spec)
    else:
        load_calculator(spec)
    return WarmUpRecord.since(start, process_start=psutil.Process().create_time())


@task(name="relax-chunk")
def relax_chunk_task(store_url: str, campaign_id: str, kind: str, hashes: list[str]) -> RelaxChunkRecord:
    """Relax one chunk of candidates (``kind='candidate'``) or known phases (``kind='reference'``).

    Skips whatever the store already holds for the campaign's MLIP and settings, writes the rest in one
    transaction, and returns counts and timing.
    """
    from tasks.logs import route_library_output
    from tasks.store import Store

    route_library_output()  # this worker's library warnings: to the campaign log
    start = time.time()
    store = Store(store_url)
    campaign_cfg, spec, shash = relax_context(store, campaign_id)
    cfg = campaign_cfg.relax
    reused: list[RelaxResult] = []
    if kind == "candidate":
        done = store.relaxed_hashes(campaign_id, hashes, spec.identity, shash)
        todo = [(h, s, True) for h, s in store.candidate_structures(campaign_id, hashes).items() if h not in done]
        if cfg.reuse and todo:
            reused = store.reusable_relaxations(campaign_id, [h for h, _, _ in todo], spec.identity, shash)
            todo = [t for t in todo if t[0] not in {r.hash for r in reused}]
        results = relax_many(todo, spec, cfg)
        store.save_relaxations(campaign_id, reused + results)
    elif kind == "reference":
        done = set(store.reference_energies(spec.identity, shash))
        seeds = {h: seed for h, seed in store.known_phase_seeds(campaign_id).items() if h in hashes and h not in done}
        results = relax_many([(h, s.structure, s.relax_cell) for h, s in seeds.items()], spec, cfg)
        store.save_reference_energies(results, {h: s.formula for h, s in seeds.items()})
    else:
        raise ValueError(f"unknown relax kind {kind!r}; allowed: candidate, reference")
    statuses = [r.status for r in results + reused]
    return RelaxChunkRecord.since(start, compute_s=sum(r.wall_time_s for r in results), kind=kind,
                               relaxed=len(results), reused=len(reused),
                               skipped=len(hashes) - len(results) - len(reused), converged=statuses.count("converged"))
