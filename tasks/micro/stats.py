"""Statistical descriptors of periodic two-phase images (True = the phase described).

Real and generated images go through the same functions, so their statistics are comparable:

* :func:`volume_fraction`
* :func:`two_point_correlation`: S2(r), the probability that two points r apart both lie in the phase,
  radially averaged, periodic (S2(0) = volume fraction, S2(∞) → volume fraction²). Computed by FFT here because
  porespy's ``two_point_correlation`` changed between releases (periodic and normalised to 1 at r = 0 before
  3.2, zero-padded and normalised to the volume fraction since).
* :func:`lineal_path`: L(z), the probability that a segment of length z lies entirely in the phase (Torquato's
  lineal-path function; porespy's ``lineal_path_distribution`` is a histogram of distances instead).
* :func:`chord_lengths`: lengths of the runs of the phase along an axis, wrapping around the periodic boundary.
* :func:`components`: connected clusters of the phase on the periodic image (cc3d, porespy's dependency).
* :func:`percolates`: whether the phase connects two opposite faces (porespy), as a transport calculation between
  an inlet and an outlet face needs.
"""

from __future__ import annotations

import numpy as np


def _binary(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {img.shape}")
    if img.dtype != bool:
        values = np.unique(img)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"expected a two-phase image of 0/1 or bool values, got values {values[:5]}")
        img = img.astype(bool)
    return img


def volume_fraction(image: np.ndarray) -> float:
    return float(_binary(image).mean())


def two_point_correlation(image: np.ndarray, r_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(r, S2)`` for integer distances r = 0 … ``r_max`` (default: half the smaller side), periodic, each S2(r)
    the mean over the pixel pairs whose separation rounds to r."""
    img = _binary(image).astype(np.float64)
    ny, nx = img.shape
    r_max = min(ny, nx) // 2 if r_max is None else int(r_max)
    f = np.fft.rfft2(img)
    auto = np.fft.irfft2(f * np.conj(f), s=(ny, nx)) / img.size  # S2 at every separation vector
    dy = np.minimum(np.arange(ny), ny - np.arange(ny))
    dx = np.minimum(np.arange(nx), nx - np.arange(nx))
    dist = np.rint(np.hypot(dy[:, None], dx[None, :])).astype(int)
    keep = dist <= r_max
    sums = np.bincount(dist[keep], weights=auto[keep], minlength=r_max + 1)
    counts = np.bincount(dist[keep], minlength=r_max + 1)
    return np.arange(r_max + 1), sums / np.maximum(counts, 1)


def lineal_path(image: np.ndarray, z_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(z, L)`` for z = 0 … ``z_max`` pixels (default: half the smaller side), averaged over both axes and both
    directions (by symmetry one direction suffices), periodic. L(0) = volume fraction; L falls to 0 once z exceeds
    the longest run of the phase."""
    img = _binary(image)
    z_max = min(img.shape) // 2 if z_max is None else int(z_max)
    out = np.empty(z_max + 1)
    along = [img.copy(), img.copy()]  # along[axis]: pixels that start an all-phase segment of the current length
    for z in range(z_max + 1):
        if z:
            along = [a & np.roll(img, -z, axis=ax) for ax, a in enumerate(along)]
        out[z] = 0.5 * (along[0].mean() + along[1].mean())
    return np.arange(z_max + 1), out


def chord_lengths(image: np.ndarray, axis: int = 1) -> np.ndarray:
    """Lengths (pixels) of every run of the phase along ``axis`` (0: columns, 1: rows), runs crossing the
    periodic boundary joined; a line entirely in the phase counts as one chord of the line's length."""
    img = np.moveaxis(_binary(image), axis, -1)
    lengths: list[int] = []
    for line in img:
        if line.all():
            lengths.append(line.size)
            continue
        if not line.any():
            continue
        start = int(np.argmin(line))  # a pixel outside the phase: rotate it to the front, no run is cut
        rolled = np.concatenate([np.roll(line, -start).astype(np.int8), [0]])
        edges = np.diff(np.concatenate([[0], rolled]))
        lengths.extend((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist())
    return np.asarray(lengths, dtype=int)


def components(image: np.ndarray) -> dict[str, float]:
    """Clusters of the phase (4-connected, periodic): their number, and the fraction of the phase in the largest."""
    import cc3d

    img = _binary(image)
    if not img.any():
        return {"n_components": 0, "largest_fraction": 0.0}
    labels = cc3d.connected_components(img.astype(np.uint8), connectivity=4, periodic_boundary=True)
    sizes = np.bincount(labels.ravel())[1:]
    return {"n_components": int((sizes > 0).sum()), "largest_fraction": float(sizes.max() / img.sum())}


def percolates(image: np.ndarray, axis: int = 0) -> bool:
    """Whether the phase connects the face at index 0 of ``axis`` with the opposite face (non-periodic along
    ``axis``, as between an inlet and an outlet)."""
    import porespy as ps

    img = _binary(image)
    return bool(img.any() and ps.filters.trim_nonpercolating_paths(img, axis=axis).any())
