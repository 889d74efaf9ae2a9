"""Rerun failed MLIP relaxations with fallback settings, recording each attempt beside the first.

The fallback for attempt ``n`` halves the optimizer's largest step ``n`` times and allows ``n + 1`` times
the steps; exploded or NaN relaxations switch to a quasi-Newton optimizer (BFGS, or LBFGS after BFGS), and
unconverged ones to LBFGS (or FIRE after it); errors are retried with the smaller step. Explicit overrides
(``--set relax.x=y``) win; naming another MLIP (``relax.backend``/``relax.mace_model``) relaxes with it first and
then polishes with the campaign's MLIP, whose energy is stored (the hull stays one MLIP). A converged rerun
becomes the candidate's effective relaxation, so the next round's evaluation and feedback use it.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import task

from conf.schema import RelaxConfig
from tasks.candidate import structure_from_json
from tasks.context import relax_context
from tasks.relax import relax_structure, worker_info

REASONS = {"exploded": "exploded", "not-converged": "not_converged", "nan": "nan", "error": "error"}


def fallback_settings(cfg: RelaxConfig, status: str, attempt: int, overrides: dict[str, Any] | None = None) -> RelaxConfig:
    """Settings of rerun ``attempt`` (1, 2, ...) of a relaxation that ended ``status``."""
    if status not in REASONS.values():
        raise ValueError(f"cannot rerun a relaxation that ended {status!r}; allowed: {', '.join(REASONS.values())}")
    if attempt < 1:
        raise ValueError(f"rerun attempts count from 1, got {attempt}")
    update: dict[str, Any] = {"max_step": cfg.max_step * 0.5 ** attempt, "max_steps": cfg.max_steps * (attempt + 1)}
    if status in ("exploded", "nan"):
        update["optimizer"] = "LBFGS" if cfg.optimizer == "BFGS" else "BFGS"
    elif status == "not_converged":
        update["optimizer"] = "FIRE" if cfg.optimizer == "LBFGS" else "LBFGS"
    return RelaxConfig.model_validate({**cfg.model_dump(), **update, **(overrides or {})})


def attempt_hash(base_hash: str, attempt: int) -> str:
    """Settings hash of rerun ``attempt`` of relaxations made with ``base_hash`` (the campaign's settings):
    distinct per attempt, and traceable to the campaign's settings (reference energies are shared)."""
    return f"{base_hash[:10]}-r{attempt}"


def helper_mlip(cfg: RelaxConfig, overrides: dict[str, Any] | None, campaign_mlip: str):
    """The MLIP named by ``--set relax.backend=... / relax.mace_model=...``, when it differs from the
    campaign's. Energies stay on the campaign's hull: the helper only relaxes, the campaign MLIP polishes."""
    keys = ("backend", "mace_model", "chgnet_model")
    if not overrides or not any(k in overrides for k in keys):
        return None
    from tasks.mlip import resolve_mlip

    spec = resolve_mlip(RelaxConfig.model_validate({**cfg.model_dump(), **{k: overrides[k] for k in keys
                                                                          if k in overrides}}))
    return spec if spec.identity != campaign_mlip else None


@task(name="rerun-relax-chunk")
def rerun_chunk_task(store_url: str, campaign_id: str, kind: str, items: list[tuple[str, str, int]],
                     overrides: dict[str, Any] | None = None) -> dict:
    """Rerun ``(hash, failed status, attempt)`` items of ``kind`` (candidate | reference) with their fallback
    settings and store every attempt."""
    from tasks.mlip import load_calculator
    from tasks.store import Store

    start = time.time()
    store = Store(store_url)
    cfg, spec, shash = relax_context(store, campaign_id)
    if kind == "candidate":
        structures = {h: (s, True) for h, s in store.candidate_structures(campaign_id, [h for h, _, _ in items]).items()}
    elif kind == "reference":
        seeds = store.known_phase_seeds(campaign_id)
        structures = {h: (seeds[h].structure, seeds[h].relax_cell) for h, _, _ in items}
    else:
        raise ValueError(f"unknown relax kind {kind!r}; allowed: candidate, reference")
    calc = load_calculator(spec)
    helper = helper_mlip(cfg.relax, overrides, spec.identity)
    helper_calc = load_calculator(helper) if helper else None
    results = []
    for h, status, attempt in items:
        rcfg = fallback_settings(cfg.relax, status, attempt, overrides)
        structure, relax_cell = structures[h]
        extra = {}
        start_from = structure
        if helper_calc is not None:  # another MLIP finds the minimum; the campaign's MLIP polishes and scores it
            pre = relax_structure(structure, helper_calc, rcfg, hash=h, mlip=helper.identity, relax_cell=relax_cell)
            extra = {"pre_relaxed_with": helper.identity, "pre_relax_status": pre.status}
            if pre.final_structure is not None and pre.status in ("converged", "not_converged"):
                start_from = structure_from_json(pre.final_structure)
        res = relax_structure(start_from, calc, rcfg, hash=h, mlip=spec.identity, relax_cell=relax_cell)
        if helper_calc is not None:
            extra["pre_relax_used"] = start_from is not structure
        if start_from is not structure and res.status != "converged":
            # the helper's geometry can be worse than the input (a small or foreign MLIP pulls a molecule or a
            # cell where the campaign's MLIP cannot settle): the campaign's MLIP also tries from the input
            direct = relax_structure(structure, calc, rcfg, hash=h, mlip=spec.identity, relax_cell=relax_cell)
            if direct.status == "converged":
                res, extra["pre_relax_used"] = direct, False
        results.append(res.model_copy(update={"attempt": attempt, "settings_hash": attempt_hash(shash, attempt),
                                              "worker": {**worker_info(), **extra}}))
    if kind == "candidate":
        store.save_relaxations(campaign_id, results)
    else:
        store.save_reference_energies(results, {h: seeds[h].formula for h, _, _ in items})
    return {"rerun": len(results), "converged": sum(r.status == "converged" for r in results),
            "statuses": [r.status for r in results], "start": start, "end": time.time()}
