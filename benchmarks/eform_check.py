"""Does the formation-energy-conditioned builtin diffusion checkpoint (``builtin:eform``) respond to its condition,
and how bound are its proposals against the default system-only one (``builtin``)?

For Ba-Ti-O and Li-In-O: 48 samples (200 reverse steps, seed 7) from ``builtin`` and from ``builtin:eform``
unconditioned and asked for a low formation-energy window; the CHGNet single-point formation energy of each
proposed (unrelaxed) cell against the MP elemental references. Writes benchmarks/results/eform-check.json.
A screen, not a discovery result: the discovery benchmark judges a checkpoint (benchmarks/README.md).

    python benchmarks/eform_check.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
ELEMENTAL = ROOT.parent / "shared/data/matbench_discovery/2023-02-07-mp-elemental-reference-entries.json.gz"
WINDOWS = {"Ba-Ti-O": (-3.8, -3.3), "Li-In-O": (-2.6, -2.1)}


def main() -> dict:
    import numpy as np

    from conf.generator import DiffusionOptions
    from conf.schema import RelaxConfig, TargetRange
    from tasks.acquisition.screen import single_point_energies
    from tasks.context import default_oxidation_states
    from tasks.generators.diffusion import DiffusionGenerator
    from tasks.metrics.hull import formation_energy_per_atom, load_elemental_references
    from tasks.mlip import load_calculator, resolve_mlip
    from tasks.results import Conditions

    elemental = load_elemental_references(ELEMENTAL)
    calc = load_calculator(resolve_mlip(RelaxConfig(backend="chgnet")))
    out = {}
    for system, window in WINDOWS.items():
        els = system.split("-")
        low = {"formation_energy_per_atom": TargetRange(min=window[0], max=window[1])}
        for label, ckpt, targets in (("eform-uncond", "builtin:eform", {}), ("eform-cond", "builtin:eform", low),
                                     ("builtin-uncond", "builtin", {})):
            gen = DiffusionGenerator(DiffusionOptions(checkpoint=ckpt, steps=200, oversample=1.0))
            cond = Conditions(round_index=0, chemical_system=els, oxidation_states=default_oxidation_states(els),
                              include_subsystems=False, max_atoms=20, property_targets=targets)
            t = time.time()
            structures = [c.structure for c in gen.sample(48, cond, seed=7)]
            energies = single_point_energies(structures, calc)
            ef = np.array([formation_energy_per_atom(s.composition, e, elemental)
                           for s, e in zip(structures, energies) if np.isfinite(e)])
            out[f"{system}/{label}"] = {"n": len(structures), "finite": int(len(ef)),
                                        "median_ef": float(np.median(ef[ef < 2])), "window": window,
                                        "frac_in_window": float(np.mean((ef >= window[0]) & (ef <= window[1]))),
                                        "s": round(time.time() - t, 1)}
            print(system, label, out[f"{system}/{label}"], flush=True)
    (ROOT / "benchmarks/results/eform-check.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
