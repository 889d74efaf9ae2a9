"""The filter's dedupe in a campaign's later rounds: earlier candidates reduced once per process, not per round.

A round's filter builds an index of every earlier candidate that shares a formula with its proposals and looks up
each proposal in it (tasks/validity.py). Before the reduced-cell cache every round reduced all of those earlier
candidates again (Niggli + primitive cell, ~9 ms each), each proposal was reduced up to three times and a
duplicate was compared with the earlier candidates oldest first (now: closest lattice first); with
pyxtal's random search proposing one formula (MgO) round after round that grew with the campaign. Here: ``--earlier``
random MgO crystals (pyxtal, seeded) stand for the earlier candidates and ``--new`` for one round's proposals; two
rounds are filtered each way, in the same run, and the same proposals must be rejected:

- ``before``: no cache, oldest first, every lattice-compatible pair handed to ``fit``;
- ``cache``: earlier cells reduced once per process, nearest lattice first (the second round is timed);
- ``prescreen``: and ``fit``'s necessary conditions asked first (tasks/metrics/prescreen.py);
- ``processes``: and the round's buckets spread over ``--workers`` processes (tasks/metrics/batch_dedupe.py;
  spawning them is in the time).

    python benchmarks/filter_rounds.py [--earlier 1000] [--new 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def random_mgo(n: int, seed: int) -> list:
    from pyxtal import pyxtal

    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        z, group, crystal = int(rng.integers(1, 5)), int(rng.integers(2, 231)), pyxtal()
        try:
            crystal.from_random(3, group, ["Mg", "O"], [z, z], factor=1.1, random_state=int(rng.integers(2**31)))
        except Exception:  # noqa: BLE001 - Wyckoff-incompatible counts: another group, as the generator does
            continue
        if crystal.valid:
            out.append(crystal.to_pymatgen())
    return out


def one_round(earlier, new, cache, prescreen: bool = True, workers: int = 0) -> tuple[float, list]:
    """One round's dedupe; ``workers`` > 0: through ``dedupe_batch`` (the filter's path) with that many processes."""
    from conf.schema import MatcherConfig
    from tasks.metrics.batch_dedupe import dedupe_batch
    from tasks.metrics.matching import MatchIndex, reduce_structure

    start = time.perf_counter()
    seen = MatchIndex(MatcherConfig(), cache=cache, prescreen=prescreen)
    for i, s in enumerate(earlier):
        seen.add(f"e{i}", s)
    if workers:
        reduced = [reduce_structure(f"n{j}", s) for j, s in enumerate(new)]
        decisions = dedupe_batch(reduced, seen, MatcherConfig(), workers=workers, min_parallel=0)
        return time.perf_counter() - start, decisions
    decisions = []
    for j, s in enumerate(new):
        if cache is None:  # before: the structure itself, reduced by find and again when stored
            match = seen.find(s)
            if match is None:
                seen.add(f"n{j}", s)
        else:
            red = reduce_structure(f"n{j}", s)
            match = seen.find(red, nearest_first=True)
            if match is None:
                seen.add(f"n{j}", red)
        decisions.append(match)
    return time.perf_counter() - start, decisions


def main() -> None:
    from tasks.metrics.matching import ReducedCache

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--earlier", type=int, default=1000)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "filter_rounds.json")
    args = parser.parse_args()
    structures = random_mgo(args.earlier + args.new, seed=0)
    earlier, new = structures[:args.earlier], structures[args.earlier:]
    runs = {"before": [one_round(earlier, new, None, prescreen=False) for _ in range(2)]}
    cache = ReducedCache()
    runs["cache"] = [one_round(earlier, new, cache, prescreen=False) for _ in range(2)]
    runs["prescreen"] = [one_round(earlier, new, cache) for _ in range(2)]
    runs["processes"] = [one_round(earlier, new, cache, workers=args.workers) for _ in range(2)]
    # the same proposals rejected (the earlier candidate named may differ: nearest first, not oldest first)
    rejected = {name: [[d is not None for d in r[1]] for r in rs] for name, rs in runs.items()}
    same = all(r == rejected["before"][0] for rs in rejected.values() for r in rs)
    later = {name: rs[1][0] for name, rs in runs.items()}
    result = {"earlier": args.earlier, "new": args.new, "workers": args.workers,
              "duplicates": sum(rejected["before"][0]), "same_decisions": same,
              "seconds": {name: [r[0] for r in rs] for name, rs in runs.items()},
              "later_round_s": later,
              "speedup_later_round": {name: later["before"] / t for name, t in later.items()},
              # kept for the earlier JSON's readers: before vs the reduced-cell cache alone
              "before_s": [r[0] for r in runs["before"]], "after_s": [r[0] for r in runs["cache"]]}
    print(f"{args.new} proposals against {args.earlier} earlier MgO candidates, later rounds: " + ", ".join(
        f"{name} {t:.1f} s (x{later['before'] / t:.2f})" for name, t in later.items()) + f"; same decisions: {same}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
