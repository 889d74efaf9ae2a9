"""Does the band-gap-conditioned builtin diffusion checkpoint (``builtin:gap``) respond to its condition?

In Li-V-O (whose gap labels the checkpoint never saw, ``unlabelled_systems``): 96 samples (200 reverse steps, seed
7) from ``builtin`` and from ``builtin:gap`` without a gap target and asked for a window (1.5-3 eV, and 0-0.3 eV as
the opposite request) at guidance 1 and 2. Each proposal's composition is judged by the Materials Project PBE gap
of its lowest-energy MP-20 polymorph (benchmarks/band_gap.py's truth; unknown compositions are counted apart).
No relaxation: a screen of what the model proposes, not a discovery result (benchmarks/band_gap.py judges that).
Writes benchmarks/results/gap-check.json.

    python benchmarks/gap_check.py [--system Li-V-O] [--n 96]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

WINDOW = (1.5, 3.0)
SETTINGS = {  # label: (checkpoint, requested gap window or None, guidance scale)
    "builtin": ("builtin", None, 1.0),
    "gap-no-target": ("builtin:gap", None, 1.0),
    "gap-window-w1": ("builtin:gap", WINDOW, 1.0),
    "gap-window-w2": ("builtin:gap", WINDOW, 2.0),
    "gap-metal-w2": ("builtin:gap", (0.0, 0.3), 2.0),
}


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.band_gap import GAPS, truth_table
    from conf.generator import DiffusionOptions
    from conf.schema import TargetRange
    from tasks.context import default_oxidation_states
    from tasks.generators.diffusion import DiffusionGenerator
    from tasks.results import Conditions

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", default="Li-V-O")
    p.add_argument("--n", type=int, default=96)
    args = p.parse_args(argv)
    truth = truth_table(GAPS)
    els = args.system.split("-")
    out: dict = {"system": args.system, "window_eV": WINDOW, "n": args.n, "settings": {}}
    for label, (ckpt, window, w) in SETTINGS.items():
        targets = {} if window is None else {"band_gap": TargetRange(min=window[0], max=window[1])}
        gen = DiffusionGenerator(DiffusionOptions(checkpoint=ckpt, steps=200, oversample=1.0, guidance_scale=w))
        cond = Conditions(round_index=0, chemical_system=els, oxidation_states=default_oxidation_states(els),
                          include_subsystems=True, max_atoms=20, property_targets=targets)
        t = time.time()
        formulas = [c.structure.composition.reduced_formula for c in gen.sample(args.n, cond, seed=7)]
        gaps = [truth[f] for f in formulas if f in truth]
        row = {"checkpoint": ckpt, "asked": window, "guidance": w, "samples": len(formulas),
               "known_compositions": len(gaps),
               "in_window": sum(WINDOW[0] <= g <= WINDOW[1] for g in gaps),
               "metals": sum(g <= 0.3 for g in gaps),
               "top_formulas": sorted({f: formulas.count(f) for f in formulas}.items(), key=lambda x: -x[1])[:6],
               "s": round(time.time() - t, 1)}
        row["share_in_window_of_known"] = row["in_window"] / max(1, len(gaps))
        out["settings"][label] = row
        print(label, row, flush=True)
    (ROOT / "benchmarks/results/gap-check.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
