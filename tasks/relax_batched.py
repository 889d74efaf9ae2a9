"""Batched MLIP relaxation (``relax.engine: batched``): TorchSim's FIRE on a Fréchet cell filter, many structures
through one model call per step.

Same criteria and outcomes as the ASE engine (:mod:`tasks.relax`): a structure is ``converged`` when every atomic
force and every row of the cell force (virial / number of atoms, as ASE's ``FrechetCellFilter``) is below
``fmax``; ``nan``, ``exploded`` (volume ratio beyond ``max_volume_ratio``, or atoms closer than the distance
floor) and ``not_converged`` (``max_steps`` reached) are judged per structure. A structure that converges or fails
leaves the batch at once (TorchSim's ``InFlightAutoBatcher``), so the others do not wait for it and it takes no
further steps. If the batch as a whole raises (a neighbour list on a blown-up cell, say), each structure is
relaxed again on its own, so one bad structure is recorded as an ``error`` and the others still relax.

Wall time per structure is the batch's wall time shared in proportion to atoms × steps.

MACE models only (TorchSim has no CHGNet interface); FIRE only.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from conf.schema import RelaxConfig
from tasks.candidate import collapse_reason, normalize_structure, structure_to_json
from tasks.context import relax_settings_hash
from tasks.errors import MLIPUnavailableError
from tasks.mlip import MLIPSpec, _dtype_gate
from tasks.results import RelaxResult

_models = threading.local()


def load_batched_model(spec: MLIPSpec):
    """TorchSim's ``MaceModel`` around the spec's MACE model file, cached per thread."""
    import torch

    if spec.backend != "mace":
        raise MLIPUnavailableError(spec.backend, spec.model, "relax.engine 'batched' needs a MACE model "
                                   "(TorchSim has no CHGNet interface); allowed engines for CHGNet: ase")
    cache = _models.__dict__.setdefault("models", {})
    if spec not in cache:
        from torch_sim.models.mace import MaceModel

        with _dtype_gate.use(torch.float64, exclusive=True):
            module = torch.load(spec.model, map_location=spec.device, weights_only=False)
            cache[spec] = MaceModel(module, device=torch.device(spec.device), dtype=torch.float64)
    return cache[spec]


def _per_system_any(mask, system_idx, n_systems: int):
    """Per system: whether any of its atoms' ``mask`` rows is true."""
    import torch

    hits = torch.zeros(n_systems, dtype=torch.long, device=mask.device)
    return hits.index_add_(0, system_idx, mask.any(dim=1).long()) > 0


def _volume_ratio(state):
    """Current / initial volume per system (1 for a fixed-cell state)."""
    import torch

    reference = getattr(state, "reference_cell", None)
    if reference is None:
        return torch.ones(state.n_systems, dtype=state.dtype, device=state.device)
    return state.volume / torch.linalg.det(reference).abs()


def _converged_or_failed(cfg: RelaxConfig):
    """TorchSim convergence function: a system leaves the batch when every atomic force and cell-force row is below
    ``fmax``, or when it has failed (non-finite energy or forces, volume ratio out of bounds)."""
    import torch
    from torch_sim.quantities import systemwise_max_force

    def done(state, last_energy=None):
        converged = systemwise_max_force(state) < cfg.fmax
        cell_forces = getattr(state, "cell_forces", None)
        if cell_forces is not None:
            converged &= cell_forces.norm(dim=2).max(dim=1).values < cfg.fmax
        ratio = _volume_ratio(state)
        failed = ~torch.isfinite(state.energy) | ~torch.isfinite(ratio)
        failed |= _per_system_any(~torch.isfinite(state.forces), state.system_idx, state.n_systems)
        failed |= (ratio > cfg.max_volume_ratio) | (ratio < 1 / cfg.max_volume_ratio)
        return converged | failed

    return done


def _run(structures: list[Structure], relax_cell: bool, model, cfg: RelaxConfig):
    """One TorchSim optimisation over ``structures``: (final single-system states in input order, steps of each)."""
    import torch_sim as ts
    from torch_sim.optimizers import fire

    optimizer = ts.frechet_cell_fire if relax_cell else fire
    batcher = ts.InFlightAutoBatcher(model=model, memory_scales_with="n_atoms",
                                     max_memory_scaler=float(sum(len(s) for s in structures) + 1),
                                     max_iterations=cfg.max_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Optimize has reached max steps": judged per structure below
        final = ts.optimize(structures, model, optimizer=optimizer, convergence_fn=_converged_or_failed(cfg),
                            autobatcher=batcher, max_steps=cfg.max_steps, steps_between_swaps=1,
                            max_step=cfg.max_step, md_flavor="ase_fire")
    return final.split(), list(batcher.swap_attempts)


def _result(structure: Structure, state, steps: int, cfg: RelaxConfig, *, hash: str, mlip: str,
            wall_time_s: float) -> RelaxResult:
    """Judge one final state as the ASE engine does."""
    energy = float(state.energy.detach().reshape(-1)[0])
    forces = state.forces.detach().cpu().numpy()
    finite = math.isfinite(energy) and bool(np.isfinite(forces).all())
    ratio = float(_volume_ratio(state).reshape(-1)[0]) if finite else None
    common = {"hash": hash, "mlip": mlip, "settings_hash": relax_settings_hash(cfg), "n_steps": steps,
              "wall_time_s": wall_time_s}
    if not finite:
        return RelaxResult(status="nan", reason=f"non-finite energy or forces by step {steps}", **common)
    max_force = float(np.linalg.norm(forces, axis=1).max())
    cell_forces = getattr(state, "cell_forces", None)
    cell_max = float(cell_forces.detach().norm(dim=2).max()) if cell_forces is not None else 0.0
    status, reason = "converged", ""
    if not 1 / cfg.max_volume_ratio <= ratio <= cfg.max_volume_ratio:
        status, reason = "exploded", f"volume ratio {ratio:.2f} at step {steps}"
    elif max(max_force, cell_max) >= cfg.fmax:
        status, reason = "not_converged", f"fmax {cfg.fmax} eV/Å not reached in {cfg.max_steps} steps"
    final = normalize_structure(state.to_structures()[0])
    if status == "converged" and (collapsed := collapse_reason(final)):
        status, reason = "exploded", collapsed
    return RelaxResult(status=status, reason=reason, energy=energy, energy_per_atom=energy / len(structure),
                       max_force=max_force, volume_ratio=ratio, final_structure=structure_to_json(final), **common)


def _relax_group(structures: list[Structure], hashes: list[str], relax_cell: bool, model, cfg: RelaxConfig,
                 mlip: str) -> list[RelaxResult]:
    import torch

    start = time.perf_counter()
    try:
        with _dtype_gate.use(torch.float64):
            states, steps = _run(structures, relax_cell, model, cfg)
    except Exception as exc:
        if len(structures) > 1:  # find the structure that broke the batch; the others relax on their own
            return [r for s, h in zip(structures, hashes, strict=True)
                    for r in _relax_group([s], [h], relax_cell, model, cfg, mlip)]
        return [RelaxResult(hash=hashes[0], status="error", reason=f"{type(exc).__name__}: {exc}", mlip=mlip,
                            settings_hash=relax_settings_hash(cfg), wall_time_s=time.perf_counter() - start)]
    wall = time.perf_counter() - start
    work = [len(s) * max(n, 1) for s, n in zip(structures, steps, strict=True)]
    return [_result(s, state, n, cfg, hash=h, mlip=mlip, wall_time_s=wall * w / sum(work))
            for s, state, n, h, w in zip(structures, states, steps, hashes, work, strict=True)]


def relax_batched(items: Sequence[tuple[str, Structure, bool]], spec: MLIPSpec, cfg: RelaxConfig) -> list[RelaxResult]:
    """Relax ``(hash, structure, relax_cell)`` items as batches (one with cell relaxation, one without); results
    in input order."""
    model = load_batched_model(spec)
    out: dict[int, RelaxResult] = {}
    for relax_cell in (True, False):
        idx = [i for i, (_, _, rc) in enumerate(items) if rc == relax_cell]
        if idx:
            results = _relax_group([items[i][1] for i in idx], [items[i][0] for i in idx], relax_cell, model, cfg,
                                   spec.identity)
            out.update(zip(idx, results, strict=True))
    return [out[i] for i in range(len(items))]
