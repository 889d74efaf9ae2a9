"""Duplicates and novelty with pymatgen's StructureMatcher: exhaustive reference and the fast engine.

Decisions are greedy and ordered, as in the field's uniqueness metrics: structure *i* is a duplicate when
``fit(s_i, s_j)`` holds for an earlier *unique* structure *j* (the first such *j* is its match); it is novel
when ``fit(s_i, r)`` holds for no reference *r*. :func:`pairwise_decisions` does exactly that over every
pair. :func:`fast_decisions` gives the same decisions far faster:

1. **Exact buckets.** ``fit`` is false unless both reduced formulas are equal (species comparator) and both
   primitive cells have the same number of sites (``attempt_supercell=False``), so only structures with the
   same (reduced formula, primitive site count) are compared.
2. **Reduce once.** Every structure is Niggli-reduced and made primitive once (what ``fit`` would redo for
   every pair) and compared with ``skip_structure_reduction=True``.
3. **Lattice prefilter.** The successive minima of the volume-normalised lattice (sorted Niggli lengths)
   are continuous invariants; pairs whose minima differ by more than ``prefilter_factor`` cannot be mapped
   within ``ltol``/``angle_tol`` and are skipped. The agreement tests check this stays conservative.
4. **Processes.** Formula buckets are independent and are spread over worker processes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from conf.schema import MatcherConfig


@dataclass(frozen=True)
class Decision:
    """Outcome for one structure: ``duplicate_of`` / ``matches_reference`` hold an index or None."""

    duplicate_of: int | None
    matches_reference: int | None

    @property
    def unique(self) -> bool:
        return self.duplicate_of is None

    @property
    def novel(self) -> bool:
        return self.matches_reference is None


def make_matcher(cfg: MatcherConfig) -> StructureMatcher:
    """StructureMatcher(ltol, stol, angle_tol) with pymatgen's defaults otherwise: species comparator,
    primitive cells, volume scaling, no supercells. The defaults (0.2, 0.3, 5) are MatterGen's settings."""
    return StructureMatcher(ltol=cfg.ltol, stol=cfg.stol, angle_tol=cfg.angle_tol)


def pairwise_decisions(samples: Sequence[Structure], references: Sequence[Structure],
                       cfg: MatcherConfig) -> list[Decision]:
    """The exhaustive reference: ``fit`` on every (sample, earlier unique) and (sample, reference) pair."""
    matcher = make_matcher(cfg)
    uniques: list[int] = []
    out = []
    for i, s in enumerate(samples):
        dup = next((j for j in uniques if matcher.fit(s, samples[j])), None)
        if dup is None:
            uniques.append(i)
        ref = next((k for k, r in enumerate(references) if matcher.fit(s, r)), None)
        out.append(Decision(dup, ref))
    return out


@dataclass
class _Reduced:
    index: int
    structure: Structure
    minima: np.ndarray


def _reduce(index: int, s: Structure) -> _Reduced:
    """What ``fit`` computes for a structure (Niggli, then primitive), plus its normalised lattice minima."""
    reduced = Structure.from_sites(s).get_reduced_structure(reduction_algo="niggli").get_primitive_structure()
    minima = np.sort(reduced.lattice.get_niggli_reduced_lattice().abc) / (reduced.volume / len(reduced)) ** (1 / 3)
    return _Reduced(index, reduced, minima)


def _close(a: np.ndarray, b: np.ndarray, factor: float) -> bool:
    ratio = a / b
    return bool(np.all(ratio <= factor) and np.all(ratio >= 1 / factor))


def _bucket_decisions(samples: list[tuple[int, Structure]], references: list[tuple[int, Structure]],
                      cfg: MatcherConfig, prefilter_factor: float) -> dict[int, Decision]:
    """Greedy dedupe + novelty inside one reduced-formula bucket (runs in a worker process)."""
    matcher = make_matcher(cfg)
    by_size: dict[int, list[_Reduced]] = defaultdict(list)
    for k, r in references:
        red = _reduce(k, r)
        by_size[len(red.structure)].append(red)
    uniques: dict[int, list[_Reduced]] = defaultdict(list)
    out = {}
    for i, s in samples:
        red = _reduce(i, s)
        n = len(red.structure)

        def fits(other: _Reduced) -> bool:
            return _close(red.minima, other.minima, prefilter_factor) and matcher.fit(
                red.structure, other.structure, skip_structure_reduction=True)

        dup = next((u.index for u in uniques[n] if fits(u)), None)
        if dup is None:
            uniques[n].append(red)
        ref = next((r.index for r in by_size.get(n, ()) if fits(r)), None)
        out[i] = Decision(dup, ref)
    return out


def _run_buckets(jobs: list[tuple], cfg: MatcherConfig, prefilter_factor: float) -> dict[int, Decision]:
    out = {}
    for samples, references in jobs:
        out.update(_bucket_decisions(samples, references, cfg, prefilter_factor))
    return out


def fast_decisions(samples: Sequence[Structure], references: Sequence[Structure], cfg: MatcherConfig,
                   workers: int = 1, prefilter_factor: float = 1.5) -> list[Decision]:
    """Same decisions as :func:`pairwise_decisions`, bucketed, reduced once, prefiltered, in processes."""
    sample_buckets: dict[str, list[tuple[int, Structure]]] = defaultdict(list)
    for i, s in enumerate(samples):
        sample_buckets[s.composition.reduced_formula].append((i, s))
    ref_buckets: dict[str, list[tuple[int, Structure]]] = defaultdict(list)
    for k, r in enumerate(references):
        formula = r.composition.reduced_formula
        if formula in sample_buckets:  # references of formulas no sample has never need reducing
            ref_buckets[formula].append((k, r))
    decisions: dict[int, Decision] = {}
    jobs = []
    for formula, members in sample_buckets.items():
        refs = ref_buckets.get(formula, [])
        if len(members) == 1 and not refs:
            decisions[members[0][0]] = Decision(None, None)  # alone in its formula: unique and novel
        else:
            jobs.append((members, refs))
    if workers <= 1 or len(jobs) < 2:
        decisions.update(_run_buckets(jobs, cfg, prefilter_factor))
    else:
        # balance by pair count: largest buckets first, each to the currently lightest worker
        shards: list[list[tuple]] = [[] for _ in range(workers)]
        load = [0] * workers
        for job in sorted(jobs, key=lambda j: -len(j[0]) * (len(j[0]) + len(j[1]))):
            w = int(np.argmin(load))
            shards[w].append(job)
            load[w] += len(job[0]) * (len(job[0]) + len(job[1]))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(_run_buckets, shards, [cfg] * workers, [prefilter_factor] * workers):
                decisions.update(part)
    return [decisions[i] for i in range(len(samples))]
