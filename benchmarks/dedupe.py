"""Dedupe + novelty at scale: the fast engine against exhaustive pairwise StructureMatcher, same run.

Reference set: every structure of ../shared/data (MP-20 rows, Perov-5, Carbon-24, MP/Alexandria/OQMD/JARVIS
samples, SuperCon) topped up to 45 000 with ion-substituted copies (new formulas, so new structures).
Generated set (10 000): strained/rattled copies of references (not novel), rotated/permuted/supercell
copies of other generated structures (duplicates) and substituted variants (mostly new).

The pairwise baseline is timed on a subset where it still finishes, the fast engine on the same subset,
and the pairwise time is extrapolated to the full size by its pair count (said so in the output).

    python benchmarks/dedupe.py [--data ../shared/data] [--n-generated 10000] [--n-reference 45000]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SOURCES = ["mp_20_subset/mp20_train_val_rows.csv.gz", "cdvae/perov_5/val.csv.gz",
           "cdvae/perov_5_dev_train_subset/train_subset.csv.gz", "cdvae/carbon_24/val.csv.gz",
           "lemat_genbench/baseline_structures/mp.csv.gz", "lemat_genbench/baseline_structures/alexandria.csv.gz",
           "lemat_genbench/baseline_structures/oqmd.csv.gz",
           "lemat_genbench/baseline_structures/jarvis_dft_from_aflow_folder.csv.gz",
           "cdvae/supercon_jarvis/train.csv.gz"]
SWAPS = {"Li": "Na", "Na": "K", "K": "Rb", "Mg": "Ca", "Ca": "Sr", "Sr": "Ba", "O": "S", "S": "Se", "Se": "Te",
         "F": "Cl", "Cl": "Br", "Br": "I", "Al": "Ga", "Ga": "In", "Si": "Ge", "Ge": "Sn", "N": "P", "P": "As",
         "Ti": "Zr", "Zr": "Hf", "Fe": "Co", "Co": "Ni", "Ni": "Cu", "Cu": "Ag", "Zn": "Cd", "Y": "La", "C": "Si"}


def load_real(data: Path, cache: Path):
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    from tasks.metrics.io import load_structure_table

    structures = []
    for rel in SOURCES:
        if (data / rel).exists():
            df = load_structure_table(data / rel)
            structures += [s for s in df["structure"] if s is not None and len(s) <= 40]
    cache.write_bytes(pickle.dumps(structures))
    return structures


def substituted(s, rng):
    present = [el.symbol for el in s.composition.elements if el.symbol in SWAPS]
    if not present:
        return None
    el = present[int(rng.integers(len(present)))]
    if SWAPS[el] in {e.symbol for e in s.composition.elements}:
        return None
    out = s.copy()
    out.replace_species({el: SWAPS[el]})
    return out


def strained(s, rng, scale=0.02):
    from pymatgen.core import Lattice, Structure

    lat = Lattice(s.lattice.matrix @ (np.eye(3) + rng.normal(0, scale, (3, 3))))
    return Structure(lat, s.species, s.frac_coords + rng.normal(0, 0.003, s.frac_coords.shape))


def copy_of(s, rng):
    from pymatgen.core import Lattice, Structure

    kind = rng.integers(3)
    if kind == 0:
        idx = rng.permutation(len(s))
        return Structure(s.lattice, [s.species[i] for i in idx], s.frac_coords[idx])
    if kind == 1:
        return Structure(Lattice(s.lattice.matrix[[1, 2, 0]]), s.species, s.frac_coords[:, [1, 2, 0]])
    out = s.copy()
    out.make_supercell([1, 1, 2])
    return out


def build_sets(real, n_ref, n_gen, rng):
    refs = list(real)
    while len(refs) < n_ref:
        sub = substituted(real[int(rng.integers(len(real)))], rng)
        if sub is not None:
            refs.append(sub)
    gen = []
    while len(gen) < n_gen:
        r = rng.random()
        if r < 0.3:
            gen.append(strained(refs[int(rng.integers(len(refs)))], rng))
        elif r < 0.4 and gen:
            gen.append(copy_of(gen[int(rng.integers(len(gen)))], rng))
        else:
            sub = substituted(refs[int(rng.integers(len(refs)))], rng)
            if sub is not None:
                gen.append(strained(sub, rng, 0.01))
    return refs[:n_ref], gen[:n_gen]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--n-generated", type=int, default=10_000)
    parser.add_argument("--n-reference", type=int, default=45_000)
    parser.add_argument("--pairwise-generated", type=int, default=200)
    parser.add_argument("--pairwise-reference", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from conf.schema import MatcherConfig
    from tasks.metrics.matching import fast_decisions, pairwise_decisions

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    real = load_real(args.data, Path("/tmp/matloop-bench-structures.pkl"))
    refs, gen = build_sets(real, args.n_reference, args.n_generated, rng)
    t_data = time.perf_counter() - t
    cfg = MatcherConfig()

    sub_gen, sub_ref = gen[:args.pairwise_generated], refs[:: max(1, len(refs) // args.pairwise_reference)]
    sub_ref = sub_ref[:args.pairwise_reference]
    t = time.perf_counter()
    pair = pairwise_decisions(sub_gen, sub_ref, cfg)
    t_pair_small = time.perf_counter() - t
    t = time.perf_counter()
    fast_small = fast_decisions(sub_gen, sub_ref, cfg, workers=args.workers)
    t_fast_small = time.perf_counter() - t

    t = time.perf_counter()
    full = fast_decisions(gen, refs, cfg, workers=args.workers)
    t_fast_full = time.perf_counter() - t
    pairs_small = len(sub_gen) * len(sub_ref) + len(sub_gen) ** 2 / 2
    pairs_full = len(gen) * len(refs) + len(gen) ** 2 / 2
    t_pair_full = t_pair_small * pairs_full / pairs_small
    result = {
        "benchmark": "dedupe_novelty", "date": datetime.now(timezone.utc).isoformat(), "cpus": os.cpu_count(),
        "workers": args.workers, "n_generated": len(gen), "n_reference": len(refs), "n_real_structures": len(real),
        "data_build_s": t_data,
        "subset": {"n_generated": len(sub_gen), "n_reference": len(sub_ref), "pairwise_s": t_pair_small,
                   "fast_s": t_fast_small, "speedup": t_pair_small / t_fast_small,
                   "same_decisions": fast_small == pair},
        "full": {"fast_s": t_fast_full, "pairwise_s_extrapolated": t_pair_full,
                 "speedup_vs_extrapolated_pairwise": t_pair_full / t_fast_full,
                 "unique": sum(d.unique for d in full), "novel": sum(d.novel for d in full)},
        "targets": {"full_fast_s_max": 60, "speedup_min": 50},
    }
    out = args.out or ROOT / "benchmarks" / "results" / "dedupe.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    s, f = result["subset"], result["full"]
    print(f"subset {s['n_generated']} x {s['n_reference']}: pairwise {s['pairwise_s']:.1f} s, fast {s['fast_s']:.2f} s "
          f"-> {s['speedup']:.0f}x, same decisions: {s['same_decisions']}")
    print(f"full {len(gen)} x {len(refs)}: fast {f['fast_s']:.1f} s (target <= 60 s); pairwise extrapolated by "
          f"pair count {f['pairwise_s_extrapolated'] / 3600:.1f} h -> {f['speedup_vs_extrapolated_pairwise']:.0f}x")
    print(f"unique {f['unique']}, novel {f['novel']}; wrote {out}")
    return result


if __name__ == "__main__":
    main()
