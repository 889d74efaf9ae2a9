"""Structure matching behind composition buckets: duplicates and novelty with pymatgen's StructureMatcher.

Structures are compared only inside a bucket of the same reduced formula, so the cost grows with the
size of the largest bucket, not with the square of the set.
"""

from __future__ import annotations

from collections import defaultdict

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from conf.schema import MatcherConfig


def make_matcher(cfg: MatcherConfig) -> StructureMatcher:
    """StructureMatcher with the configured tolerances (defaults: ltol 0.2, stol 0.3, angle_tol 5, as in
    MatterGen), primitive-cell reduction and volume scaling (pymatgen defaults), species comparator."""
    return StructureMatcher(ltol=cfg.ltol, stol=cfg.stol, angle_tol=cfg.angle_tol)


class BucketMatcher:
    """A growing set of labelled structures that answers "does this match one of yours?"."""

    def __init__(self, cfg: MatcherConfig) -> None:
        self._matcher = make_matcher(cfg)
        self._buckets: dict[str, list[tuple[str, Structure]]] = defaultdict(list)

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def add(self, label: str, structure: Structure) -> None:
        self._buckets[structure.composition.reduced_formula].append((label, structure))

    def find(self, structure: Structure) -> str | None:
        """Label of the first stored structure that matches, or ``None``."""
        for label, other in self._buckets.get(structure.composition.reduced_formula, ()):
            if self._matcher.fit(structure, other):
                return label
        return None
