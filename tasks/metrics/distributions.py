"""Statistics matching, property satisfaction and relaxation RMSD."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure
from scipy.stats import wasserstein_distance

from conf.schema import MatcherConfig, TargetRange
from tasks.metrics.matching import make_matcher


def density(s: Structure) -> float:
    """g/cm³."""
    return float(s.density)


def n_elements(s: Structure) -> int:
    return len(s.composition.elements)


def wasserstein(generated: Sequence[float], reference: Sequence[float]) -> float | None:
    """1-D Wasserstein distance between two samples (NaNs dropped); None when either is empty."""
    a = np.asarray([x for x in generated if x is not None and np.isfinite(x)], dtype=float)
    b = np.asarray([x for x in reference if x is not None and np.isfinite(x)], dtype=float)
    if len(a) == 0 or len(b) == 0:
        return None
    return float(wasserstein_distance(a, b))


def property_satisfaction(values: Sequence[float | None], target: TargetRange, n_total: int,
                          tolerance: float = 0.0) -> float:
    """Share of all ``n_total`` generated structures whose value lies in the target (missing = not)."""
    if n_total == 0:
        return 0.0
    hits = sum(1 for v in values if v is not None and np.isfinite(v) and target.contains(float(v), tolerance))
    return hits / n_total


def relaxation_rmsd(generated: Structure, relaxed: Structure, cfg: MatcherConfig | None = None) -> float | None:
    """StructureMatcher's RMS displacement (normalised by (V/N)^(1/3)) between a structure and its relaxed
    form; None when the relaxation moved it beyond the matcher's tolerances."""
    rms = make_matcher(cfg or MatcherConfig()).get_rms_dist(generated, relaxed)
    return None if rms is None else float(rms[0])
