"""Necessary conditions for ``StructureMatcher.fit``, asked before it and far cheaper than it.

``fit(s1, s2)`` (pymatgen, same primitive size, no supercells) scales both cells to one volume, searches the
first lattice for bases close to the second's (``Lattice.find_all_mappings``: lengths within ``ltol``, angles
within ``angle_tol``, determinant ±1) and, for each such basis, tries the translations that put one chosen site of
the second structure on each like site of the first. A translation is kept only when every site of the second
lands within a fractional tolerance (from ``stol`` and the averaged lattice) of a like site of the first
(``_cmp_fstruct``); only those go on to the Cartesian assignment that decides. :func:`may_fit` asks the same two
questions with numpy, every candidate basis at once and then every (basis, translation) pair at once, one stored site
at a time (most pairs are out after a site or two), on cells scaled to 1 Å³ per site (the same up to a common
factor, which the ratio, angle and fractional tests ignore) and tolerances widened by one part in 10⁶, so
rounding can only let more pairs through. A pair it refuses is a pair ``fit`` refuses; the agreement tests
(tests/test_metrics.py, tests/test_prescreen.py) check decisions against ``fit`` on every pair.
"""

from __future__ import annotations

import numpy as np

from conf.schema import MatcherConfig
from tasks.metrics.reduced import Reduced

_WIDEN = 1 + 1e-6


def _lattice_mappings(new: Reduced, stored: Reduced, cfg: MatcherConfig) -> np.ndarray:
    """Integer matrices (stacked) whose rows are ``new``'s lattice vectors (fractional) forming a basis like
    ``stored``'s: every basis ``Lattice.find_all_mappings`` yields with |det| = 1, and possibly a few more.

    The same search, all candidate triples at once: lattice points of ``new`` in a sphere, those whose length ratio
    to each of ``stored``'s lengths is inside (1/(1+ltol), 1+ltol), then the triples whose three angles are within
    ``angle_tol`` of ``stored``'s, both tolerances widened by 1e-6."""
    ltol, atol = cfg.ltol + 1e-6, cfg.angle_tol + 1e-6
    lengths, angles = np.array(stored.unit_lattice.abc), np.array(stored.unit_lattice.angles)
    frac, dist, _, _ = new.unit_lattice.get_points_in_sphere([[0, 0, 0]], [0, 0, 0], lengths.max() * (1 + ltol),
                                                             zip_results=False)
    if len(frac) == 0:
        return np.zeros((0, 3, 3))
    frac, dist = np.asarray(frac), np.asarray(dist)
    cart = frac @ new.unit_lattice.matrix
    picks = [np.flatnonzero((dist / length < 1 + ltol) & (dist / length > 1 / (1 + ltol))) for length in lengths]
    if any(len(p) == 0 for p in picks):
        return np.zeros((0, 3, 3))
    unit = cart / np.maximum(dist, 1e-12)[:, None]

    def near_angle(p: np.ndarray, q: np.ndarray, target: float) -> np.ndarray:
        cos = np.clip(unit[p] @ unit[q].T, -1, 1)
        return np.abs(np.degrees(np.arccos(cos)) - target) < atol

    gamma, beta, alpha = (near_angle(picks[0], picks[1], angles[2]), near_angle(picks[0], picks[2], angles[1]),
                          near_angle(picks[1], picks[2], angles[0]))
    i, j, k = np.nonzero(gamma[:, :, None] & beta[:, None, :] & alpha[None, :, :])
    scale = np.rint(np.stack([frac[picks[0][i]], frac[picks[1][j]], frac[picks[2][k]]], axis=1))
    return scale[np.abs(np.abs(np.linalg.det(scale)) - 1) < 0.5]


def _parameters(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths and angles (degrees; alpha, beta, gamma) of a stack of lattice matrices (rows: vectors)."""
    lengths = np.linalg.norm(matrices, axis=-1)
    pairs = ((1, 2), (0, 2), (0, 1))
    cos = np.stack([np.einsum("...k,...k->...", matrices[..., i, :], matrices[..., j, :])
                    / (lengths[..., i] * lengths[..., j]) for i, j in pairs], axis=-1)
    return lengths, np.degrees(np.arccos(np.clip(cos, -1, 1)))


def _reciprocal_lengths_and_volume(lengths: np.ndarray, angles_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|b*_i| (with 2π, as pymatgen's reciprocal lattice) and volumes of cells with these parameters (stacked)."""
    a, b, c = lengths[..., 0], lengths[..., 1], lengths[..., 2]
    ca, cb, cg = (np.cos(np.radians(angles_deg[..., i])) for i in range(3))
    metric = np.stack([np.stack([a * a, a * b * cg, a * c * cb], -1), np.stack([a * b * cg, b * b, b * c * ca], -1),
                       np.stack([a * c * cb, b * c * ca, c * c], -1)], -2)
    recip = 2 * np.pi * np.sqrt(np.diagonal(np.linalg.inv(metric), axis1=-2, axis2=-1))
    return recip, np.sqrt(np.linalg.det(metric))


def may_fit(new: Reduced, stored: Reduced, cfg: MatcherConfig) -> bool:
    """False only when ``fit(new.structure, stored.structure, skip_structure_reduction=True)`` is false."""
    scale = _lattice_mappings(new, stored, cfg)
    if not len(scale):
        return False
    if new.species is None or stored.species is None:  # disordered sites: the species test is fit's own
        return True
    s1, s2 = np.array(new.species), np.array(stored.species)
    mask = s2[:, None] != s1[None, :]  # mask[i, j]: stored site i cannot sit on new site j
    anchor = int(np.argmax(mask.sum(axis=1)))  # fit's choice: the first site of the least common species
    targets = np.flatnonzero(~mask[anchor])
    f1 = np.einsum("nk,mkl->mnl", new.frac, np.linalg.inv(scale))  # new's sites in each mapped basis
    f1 -= np.floor(f1)
    lengths, angles = _parameters(scale @ new.unit_lattice.matrix)
    stored_lengths, stored_angles = _parameters(stored.unit_lattice.matrix)
    inv_abc, volume = _reciprocal_lengths_and_volume((lengths + stored_lengths) / 2, (angles + stored_angles) / 2)
    frac_tol = inv_abc * cfg.stol / (np.pi * (len(s1) / volume[:, None]) ** (1 / 3)) * _WIDEN + 1e-12  # (mapping, 3)
    # every (mapping, translation) pair, translations putting the anchor on each like site of new; a pair survives
    # a stored site when some like new site is within the tolerance of where the translation puts it. Sites are
    # asked one at a time, so most pairs are dropped after a site or two.
    m_idx = np.repeat(np.arange(len(scale)), len(targets))
    sites, tol = f1[m_idx], frac_tol[m_idx][:, None]  # (pair, new site, 3), (pair, 1, 3)
    shifts = (f1[:, targets] - stored.frac[anchor]).reshape(-1, 3)  # (pair, 3)
    for site in range(len(s2)):
        diff = sites[:, ~mask[site]] - (stored.frac[site] + shifts)[:, None]  # (pair, like new site, 3)
        near = np.all(np.abs(diff - np.round(diff)) < tol, axis=-1).any(axis=1)
        if not near.all():
            if not near.any():
                return False
            sites, tol, shifts = sites[near], tol[near], shifts[near]
    return True
