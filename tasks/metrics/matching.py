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
   Pairs that pass are then asked ``fit``'s own necessary conditions, vectorised and a hair looser
   (:func:`tasks.metrics.prescreen.may_fit`): a lattice mapping, and a translation that puts every site near a
   like site. Only pairs that pass both are handed to ``fit``.
4. **Processes.** Formula buckets are independent and are spread over worker processes.
"""

from __future__ import annotations

import multiprocessing
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from conf.schema import MatcherConfig
from tasks.metrics.prescreen import may_fit
from tasks.metrics.reduced import Reduced, reduce_structure
from tasks.workers import skip_exit_collection


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


class ReducedCache(OrderedDict):
    """Reduced structures by a label that names one structure for good (a candidate's canonical hash), kept
    across lookups and rounds in one process, the least recently used dropped beyond ``max_size``: a campaign's
    filter then reduces each earlier candidate once per process, not once per round."""

    def __init__(self, max_size: int = 100_000) -> None:
        super().__init__()
        self.max_size = max_size

    def get_reduced(self, label: object) -> Reduced | None:
        red = self.get(label)
        if red is not None:
            self.move_to_end(label)
        return red

    def put(self, label: object, red: Reduced) -> None:
        self[label] = red
        self.move_to_end(label)
        while len(self) > self.max_size:
            self.popitem(last=False)


class MatchIndex:
    """A growing set of labelled structures answering "which of yours does this one fit?".

    Lookups compare only inside the (reduced formula, primitive size) bucket, skip pairs whose lattice
    minima differ by more than ``prefilter_factor``, and call ``fit(new, stored)`` on pre-reduced cells, in
    insertion order; the first fit wins. Stored structures are reduced lazily, the first time a structure of
    their reduced formula is looked up: an index of thousands of seeds costs nothing for formulas never asked.
    """

    def __init__(self, cfg: MatcherConfig, prefilter_factor: float = 1.5, cache: ReducedCache | None = None,
                 prescreen: bool = True) -> None:
        """``cache``: reduced structures by label, shared with other indexes, for labels that name one structure
        for good (candidate hashes; not seed ids, which campaigns choose). ``prescreen``: ask ``may_fit`` and the
        minima bound before ``fit`` (off only to measure what they save: the decisions are the same)."""
        self._cache = cache
        self._prescreen = prescreen
        self._cfg = cfg
        self._matcher = make_matcher(cfg)
        self._factor = prefilter_factor
        self._buckets: dict[tuple[str, int], list[Reduced]] = defaultdict(list)
        self._pending: dict[str, list[tuple[object, Structure | Reduced]]] = defaultdict(list)
        self._formulas: set[str] = set()  # formulas already reduced into buckets

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values()) + sum(len(p) for p in self._pending.values())

    def add(self, label: object, structure: Structure | Reduced) -> None:
        if isinstance(structure, Reduced):
            formula = structure.key[0]
            if self._cache is not None:
                self._cache.put(label, structure)
        else:
            formula = structure.composition.reduced_formula
            cached = self._cache.get_reduced(label) if self._cache is not None else None
            structure = cached or structure
        self._pending[formula].append((label, structure))

    def _flush(self, formula: str) -> None:
        for label, structure in self._pending.pop(formula, ()):
            self._formulas.add(formula)
            red = structure if isinstance(structure, Reduced) else reduce_structure(label, structure)
            if self._cache is not None and not isinstance(structure, Reduced):
                self._cache.put(label, red)
            self._buckets[red.key].append(replace(red, label=label))

    def stored(self, key: tuple[str, int]) -> list[Reduced]:
        """The stored structures of one (reduced formula, primitive size) bucket, reduced."""
        self._flush(key[0])
        return list(self._buckets.get(key, ()))

    def find(self, structure: Structure | Reduced, nearest_first: bool = False) -> object | None:
        """Label of the first stored structure that ``structure`` fits, or None.

        ``nearest_first``: try the stored structures whose lattice minima are closest first, and return the first
        that fits (the decision, fits any or none, is the same; which one is named may differ). A duplicate is then
        usually found in a few fits instead of half its bucket's."""
        formula = structure.key[0] if isinstance(structure, Reduced) else structure.composition.reduced_formula
        if formula not in self._pending and formula not in self._formulas:
            return None  # nothing of this formula stored: no reduction needed
        red = structure if isinstance(structure, Reduced) else reduce_structure(None, structure)
        self._flush(red.key[0])
        bucket = self._buckets.get(red.key, ())
        if not bucket:
            return None
        ratio = red.minima[None, :] / np.array([other.minima for other in bucket])
        # fit(new, stored) maps a basis of new's lattice within ltol of stored's Niggli lengths, so new's k-th
        # successive minimum is below (1 + ltol) x stored's (a Niggli cell's sorted lengths are the minima)
        upper = min(self._factor, (1 + self._cfg.ltol) * 1.001) if self._prescreen else self._factor
        keep = np.all((ratio <= upper) & (ratio >= 1 / self._factor), axis=1)
        order = np.flatnonzero(keep)
        if nearest_first:
            order = order[np.argsort(np.abs(np.log(ratio[order])).max(axis=1), kind="stable")]
        for i in order:
            other = bucket[i]
            if self._prescreen and not may_fit(red, other, self._cfg):
                continue
            if self._matcher.fit(red.structure, other.structure, skip_structure_reduction=True):
                return other.label
        return None


def _bucket_decisions(samples: list[tuple[int, Structure]], references: list[tuple[int, Structure]],
                      cfg: MatcherConfig, prefilter_factor: float) -> dict[int, Decision]:
    """Greedy dedupe + novelty inside one reduced-formula bucket (runs in a worker process)."""
    refs, uniques = MatchIndex(cfg, prefilter_factor), MatchIndex(cfg, prefilter_factor)
    for k, r in references:
        refs.add(k, r)
    out = {}
    for i, s in samples:
        red = reduce_structure(i, s)
        dup = uniques.find(red)
        if dup is None:
            uniques.add(i, red)
        out[i] = Decision(dup, refs.find(red))
    return out


def _run_buckets(jobs: list[tuple], cfg: MatcherConfig, prefilter_factor: float) -> dict[int, Decision]:
    out = {}
    for samples, references in jobs:
        out.update(_bucket_decisions(samples, references, cfg, prefilter_factor))
    return out


def fast_decisions(samples: Sequence[Structure], references: Sequence[Structure], cfg: MatcherConfig,
                   workers: int = 1, prefilter_factor: float = 1.5, min_parallel: int = 1000) -> list[Decision]:
    """Same decisions as :func:`pairwise_decisions`, bucketed, reduced once, prefiltered, in processes.

    Worker processes are used only for at least ``min_parallel`` samples: below that, starting them costs
    more than they save.
    """
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
    if workers <= 1 or len(jobs) < 2 or len(samples) < min_parallel:
        decisions.update(_run_buckets(jobs, cfg, prefilter_factor))
    else:
        # many small shards, largest first, handed out as workers free up (buckets vary a lot in cost)
        jobs.sort(key=lambda j: -len(j[0]) * (len(j[0]) + len(j[1])))
        n_shards = min(len(jobs), workers * 16)
        shards = [jobs[i::n_shards] for i in range(n_shards)]
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=skip_exit_collection) as pool:
            futures = [pool.submit(_run_buckets, shard, cfg, prefilter_factor) for shard in shards]
            for future in futures:
                decisions.update(future.result())
    return [decisions[i] for i in range(len(samples))]
