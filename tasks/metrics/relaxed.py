"""Relax generated structures with an MLIP for evaluation (energies, relaxed structures, RMSD)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from conf.schema import RelaxConfig
from tasks.candidate import structure_from_json
from tasks.metrics.distributions import relaxation_rmsd
from tasks.mlip import MLIPSpec, resolve_mlip
from tasks.relax import relax_many
from tasks.results import RelaxResult


def _relax(items: list, spec: MLIPSpec, cfg: RelaxConfig) -> list[RelaxResult]:
    return relax_many(items, spec, cfg)


def relax_structures(structures: list, cfg: RelaxConfig, spec: MLIPSpec, workers: int = 1,
                     relax_cell: list[bool] | None = None) -> list[RelaxResult]:
    """Relax ``structures`` (in order) in ``workers`` processes, each loading the model once."""
    flags = relax_cell or [True] * len(structures)
    items = [(str(i), s, rc) for i, (s, rc) in enumerate(zip(structures, flags))]
    if workers <= 1 or len(items) < 2:
        return relax_many(items, spec, cfg)
    parts = [items[w::workers] for w in range(workers)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(_relax, parts, [spec] * workers, [cfg] * workers))
    by_index = {int(r.hash): r for part in done for r in part}
    return [by_index[i] for i in range(len(items))]


def relax_table(df: pd.DataFrame, cfg: RelaxConfig, workers: int = 1) -> tuple[pd.DataFrame, MLIPSpec]:
    """Add ``energy_per_atom`` (converged only), ``relaxed_structure``, ``relax_status`` and ``rmsd``."""
    spec = resolve_mlip(cfg)
    ok = df["structure"].notna()
    results = relax_structures(list(df.loc[ok, "structure"]), cfg, spec, workers)
    df = df.copy()
    df["relax_status"], df["relaxed_structure"], df["rmsd"] = "unparsed", None, np.nan
    df["energy_per_atom"] = np.nan
    for idx, r in zip(df.index[ok], results):
        df.at[idx, "relax_status"] = r.status if not r.reason else f"{r.status}: {r.reason}"
        if r.status == "converged":
            relaxed = structure_from_json(r.final_structure)
            df.at[idx, "relaxed_structure"] = relaxed
            df.at[idx, "energy_per_atom"] = r.energy_per_atom
            rms = relaxation_rmsd(df.at[idx, "structure"], relaxed)
            df.at[idx, "rmsd"] = np.nan if rms is None else rms
    return df, spec


def mlip_elemental_references(elements: set[str], cfg: RelaxConfig, spec: MLIPSpec) -> dict[str, float]:
    """Energy per atom of each element's ASE reference state relaxed with the same MLIP."""
    from tasks.seeds import ase_reference_state

    seeds = {el: ase_reference_state(el) for el in sorted(elements)}
    usable = {el: s for el, s in seeds.items() if s is not None}
    results = relax_many([(el, s.structure, s.relax_cell) for el, s in usable.items()], spec, cfg)
    return {r.hash: r.energy_per_atom for r in results if r.status == "converged"}
