"""Batched (TorchSim) vs sequential (ASE) MLIP relaxation on the same model and the same cells.

    python benchmarks/relax_engines.py [--model PATH|MACE-MP name] [--n 64] [--max-atoms 20] [--threads 1]
                                       [--batch-sizes 1,8,16,32,64] [--out benchmarks/results/relax_engines.json]

Both engines relax every cell to ``fmax`` 0.05 eV/Å (FIRE, Fréchet cell filter, 300 steps at most) through
``tasks.relax.relax_many``, the campaign's own code path, in this process with ``--threads`` torch threads. The
batched engine runs the cells in chunks of each ``--batch-sizes`` value (the campaign's ``relax.chunk_size``);
the sequential one, one cell at a time. Each model is loaded and warmed up before its timer starts.

Compared per cell: outcome, energy per atom, final volume, whether the two final structures match (pymatgen
StructureMatcher, default tolerances). A pair that ends more than 1 meV/atom apart or with unmatched structures is
listed as a different minimum, not hidden. Prints the speed-up (sequential wall / batched wall, same run) and
writes JSON.

Without ``--model`` it trains the tests' tiny MACE (16 channels, L=0, 2 interactions; Mg-O; ~1 min) and relaxes
rattled, strained Mg-O cells of 2 to 20 atoms; with a MACE-MP name or file, ``--cells mp20`` takes MP-20 rows
of at most ``--max-atoms`` atoms from ../shared/data instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def mgo_cells(n: int, max_atoms: int, seed: int = 0):
    """Rattled (0.1 Å) and strained (3 %) Mg-O cells: rocksalt, wurtzite, zincblende, CsCl and Mg supercells."""
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    rng = np.random.default_rng(seed)
    bases = [bulk("MgO", "rocksalt", a=4.25), bulk("MgO", "rocksalt", a=4.25, cubic=True),
             bulk("MgO", "wurtzite", a=3.3, c=5.2), bulk("MgO", "zincblende", a=4.6),
             bulk("MgO", "cesiumchloride", a=2.7), bulk("Mg", "hcp", a=3.21, c=5.21)]
    reps = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2), (3, 1, 1), (3, 2, 1)]
    out = []
    while len(out) < n:
        atoms = bases[int(rng.integers(len(bases)))].repeat(reps[int(rng.integers(len(reps)))])
        if len(atoms) > max_atoms:
            continue
        atoms.set_cell(atoms.cell @ (np.eye(3) + rng.normal(0, 0.03, (3, 3))), scale_atoms=True)
        atoms.rattle(0.1, seed=int(rng.integers(1 << 30)))
        out.append(AseAtomsAdaptor.get_structure(atoms))
    return out


def mp20_cells(n: int, max_atoms: int, seed: int = 0):
    """``n`` MP-20 rows of at most ``max_atoms`` atoms (for a foundation model), seeded."""
    from benchmarks.discovery_data import DEFAULT_DATA, read_rows, structures_of

    rows = read_rows(DEFAULT_DATA[0])
    rows = rows[~(rows["nsites"] > max_atoms)].sample(frac=1.0, random_state=seed)
    return [s for _, s in structures_of(rows.head(4 * n)) if len(s) <= max_atoms][:n]


def timed(items, spec, cfg, chunk: int):
    from tasks.relax import relax_many

    start = time.perf_counter()
    results = []
    for i in range(0, len(items), chunk):
        results += relax_many(items[i:i + chunk], spec, cfg)
    return results, time.perf_counter() - start


def compare(seq, bat) -> list[dict]:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from tasks.candidate import structure_from_json

    matcher = StructureMatcher()
    rows = []
    for a, b in zip(seq, bat, strict=True):
        row = {"hash": a.hash, "ase": a.status, "batched": b.status, "ase_steps": a.n_steps, "batched_steps": b.n_steps}
        if a.energy_per_atom is not None and b.energy_per_atom is not None:
            row["d_energy_per_atom"] = b.energy_per_atom - a.energy_per_atom
            row["ase_volume_ratio"], row["batched_volume_ratio"] = a.volume_ratio, b.volume_ratio
        if a.final_structure and b.final_structure:
            row["same_structure"] = bool(matcher.fit(structure_from_json(a.final_structure),
                                                     structure_from_json(b.final_structure)))
        row["different_minimum"] = (a.status != b.status or not row.get("same_structure", False)
                                    or abs(row.get("d_energy_per_atom", 1.0)) > 1e-3)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="MACE model file or MACE-MP name (default: train the tiny one).")
    parser.add_argument("--cells", choices=["mgo", "mp20"], default="mgo")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-atoms", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-sizes", default="1,8,16,32,64")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/matloop-relax-engines"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "relax_engines.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from conf.schema import RelaxConfig
    from tasks.mlip import resolve_mlip
    from tests.mace_tiny import tiny_mace_model

    model = args.model or tiny_mace_model(args.workdir)
    cells = (mgo_cells if args.cells == "mgo" else mp20_cells)(args.n, args.max_atoms)
    items = [(f"cell{i:03d}", s, True) for i, s in enumerate(cells)]
    base = RelaxConfig(backend="mace", mace_model=model, device=args.device, fmax=0.05, max_steps=300)
    spec = resolve_mlip(base)
    batched_cfg = base.model_copy(update={"engine": "batched"})
    for cfg in (base, batched_cfg):  # load and warm up both models outside the timers
        timed(items[:1], spec, cfg, 1)

    seq, seq_s = timed(items, spec, base, 1)
    print(f"sequential (ASE): {seq_s:.1f} s for {len(items)} cells", flush=True)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    runs = {}
    for size in sizes:
        bat, bat_s = timed(items, spec, batched_cfg, size)
        runs[size] = (bat, bat_s)
        print(f"batched, chunks of {size}: {bat_s:.1f} s, speed-up {seq_s / bat_s:.2f}x", flush=True)
    best = max(sizes)
    rows = compare(seq, runs[best][0])
    different = [r for r in rows if r["different_minimum"]]
    d_e = [abs(r["d_energy_per_atom"]) for r in rows if "d_energy_per_atom" in r]
    result = {
        "benchmark": "relax_engines", "date": datetime.now(timezone.utc).isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch_threads": args.threads, "device": args.device,
                    "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None},
        "model": spec.identity, "cells": args.cells, "n": len(items),
        "atoms": {"min": min(len(s) for s in cells), "max": max(len(s) for s in cells),
                  "total": sum(len(s) for s in cells)},
        "fmax": base.fmax, "max_steps": base.max_steps,
        "sequential": {"seconds": seq_s, "steps": sum(r.n_steps for r in seq),
                       "statuses": {s: [r.status for r in seq].count(s) for s in {r.status for r in seq}}},
        "batched": {str(size): {"seconds": s, "speedup": seq_s / s, "steps": sum(r.n_steps for r in b),
                                "statuses": {k: [r.status for r in b].count(k) for k in {r.status for r in b}}}
                    for size, (b, s) in runs.items()},
        "speedup_at_largest_batch": seq_s / runs[best][1],
        "comparison_at_largest_batch": {
            "different_minimum": len(different), "max_abs_d_energy_per_atom": max(d_e) if d_e else None,
            "median_abs_d_energy_per_atom": float(np.median(d_e)) if d_e else None,
            "same_structure": sum(bool(r.get("same_structure")) for r in rows)},
        "cells_compared": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"speed-up at chunks of {best}: {result['speedup_at_largest_batch']:.2f}x; different minima: "
          f"{len(different)} of {len(rows)}; max |dE| "
          f"{result['comparison_at_largest_batch']['max_abs_d_energy_per_atom']} eV/atom -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
