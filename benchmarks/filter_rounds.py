"""The filter's dedupe in a campaign's later rounds: earlier candidates reduced once per process, not per round.

A round's filter builds an index of every earlier candidate that shares a formula with its proposals and looks up
each proposal in it (tasks/validity.py). Before the reduced-cell cache every round reduced all of those earlier
candidates again (Niggli + primitive cell, ~9 ms each), each proposal was reduced up to three times and a
duplicate was compared with the earlier candidates oldest first (now: closest lattice first); with
pyxtal's random search proposing one formula (MgO) round after round that grew with the campaign. Here: ``--earlier``
random MgO crystals (pyxtal, seeded) stand for the earlier candidates and ``--new`` for one round's proposals; two
rounds are filtered the old way (no cache) and the current way (the second round with the cache the first filled),
in the same run, and the same proposals must be rejected.

    python benchmarks/filter_rounds.py [--earlier 1000] [--new 64]
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


def one_round(earlier, new, cache) -> tuple[float, list]:
    from conf.schema import MatcherConfig
    from tasks.metrics.matching import MatchIndex, reduce_structure

    start = time.perf_counter()
    seen = MatchIndex(MatcherConfig(), cache=cache)
    for i, s in enumerate(earlier):
        seen.add(f"e{i}", s)
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
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "filter_rounds.json")
    args = parser.parse_args()
    structures = random_mgo(args.earlier + args.new, seed=0)
    earlier, new = structures[:args.earlier], structures[args.earlier:]
    before = [one_round(earlier, new, None) for _ in range(2)]
    cache = ReducedCache()
    after = [one_round(earlier, new, cache) for _ in range(2)]
    # the same proposals rejected (the earlier candidate named may differ: nearest first, not oldest first)
    same = all([d is None for d in b[1]] == [d is None for d in a[1]] for b, a in zip(before, after))
    result = {"earlier": args.earlier, "new": args.new, "duplicates": sum(d is not None for d in after[0][1]),
              "before_s": [b[0] for b in before], "after_s": [a[0] for a in after], "same_decisions": same,
              "speedup_later_round": before[1][0] / after[1][0]}
    print(f"{args.new} proposals against {args.earlier} earlier MgO candidates: before {before[1][0]:.1f} s a round, "
          f"now {after[0][0]:.1f} s (first round) and {after[1][0]:.1f} s (later rounds): "
          f"x{result['speedup_later_round']:.2f}; same decisions: {same}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
