"""Physical models that make microstructures from process conditions.

* :func:`cahn_hilliard`: spinodal decomposition of a binary alloy, the Cahn–Hilliard equation
  dφ/dt = ∇²(φ³ − φ − γ∇²φ) (mobility 1, free energy (φ² − 1)²/4, order parameter φ ∈ [−1, 1]), integrated by the
  semi-implicit Fourier-spectral scheme of Chen & Shen (Comput. Phys. Commun. 108, 147, 1998): the stiff linear
  terms implicit, the nonlinear term explicit, so large time steps are stable. Periodic by construction; the mean
  composition (the k = 0 mode) is conserved exactly. PyMKS ships the same scheme, but its package imports
  ``pkg_resources`` (gone from current setuptools; read from its source, not installed), hence these few lines.
* :func:`spinodal_images`: quench from the homogeneous state at a mean composition, anneal, threshold at φ = 0.
* :func:`porous_images`: porespy's ``blobs`` (Gaussian-filtered noise thresholded at a porosity), periodic.
"""

from __future__ import annotations

import numpy as np


def cahn_hilliard(phi: np.ndarray, steps: int, dt: float = 1.0, gamma: float = 1.0, dx: float = 1.0) -> np.ndarray:
    """Integrate the Cahn–Hilliard equation for ``steps`` steps of ``dt``.

    Parameters
    ----------
    phi
        Initial order parameter, shape ``(n_samples, ny, nx)`` (a single ``(ny, nx)`` field is accepted too).
    steps, dt
        Number of time steps and their length (dimensionless time; annealing time = ``steps * dt``).
    gamma
        Gradient-energy coefficient: interfaces are ~sqrt(gamma) grid units wide (for ``dx`` = 1).
    dx
        Grid spacing.

    Returns
    -------
    The field after ``steps`` steps, same shape as ``phi`` (float64).
    """
    if steps < 0 or dt <= 0 or gamma <= 0 or dx <= 0:
        raise ValueError(f"cahn_hilliard needs steps >= 0 and dt, gamma, dx > 0 (got {steps}, {dt}, {gamma}, {dx})")
    field = np.asarray(phi, dtype=np.float64)
    single = field.ndim == 2
    field = field[None] if single else field
    ny, nx = field.shape[-2:]
    ky = 2 * np.pi * np.fft.fftfreq(ny, d=dx)
    kx = 2 * np.pi * np.fft.rfftfreq(nx, d=dx)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    # linear part -k²(-φ) - γk⁴φ split: the -φ term explicit with the cubic one, the k⁴ term implicit
    denom = 1.0 + dt * gamma * k2 ** 2
    hat = np.fft.rfft2(field)
    for _ in range(steps):
        nonlinear = np.fft.rfft2(field ** 3 - field)
        hat = (hat - dt * k2 * nonlinear) / denom
        field = np.fft.irfft2(hat, s=(ny, nx))
    return field[0] if single else field


def spinodal_images(mean_composition: float, anneal_time: float, n: int, size: int, seed: int,
                    dt: float = 1.0, gamma: float = 1.0, noise: float = 0.05) -> np.ndarray:
    """``n`` spinodal microstructures of ``size`` × ``size`` pixels: a homogeneous alloy of A fraction
    ``mean_composition`` (φ̄ = 2c − 1) with uniform noise of amplitude ``noise`` is annealed for ``anneal_time``
    (rounded to whole ``dt`` steps) and thresholded at φ = 0. True = A-rich phase. Inside the spinodal
    (|φ̄| < 1/√3, c in 0.21–0.79) the noise grows into an interconnected pattern that coarsens with time; outside it,
    the alloy stays (nearly) homogeneous. Deterministic for a given ``seed``."""
    if not 0.0 < mean_composition < 1.0:
        raise ValueError(f"mean_composition must lie in (0, 1), got {mean_composition}")
    if anneal_time <= 0:
        raise ValueError(f"anneal_time must be > 0, got {anneal_time}")
    rng = np.random.default_rng(seed)
    phi0 = (2.0 * mean_composition - 1.0) + noise * rng.uniform(-1.0, 1.0, size=(n, size, size))
    steps = max(int(round(anneal_time / dt)), 1)
    return cahn_hilliard(phi0, steps, dt=dt, gamma=gamma) > 0.0


def porous_images(porosity: float, blobiness: float, n: int, size: int, seed: int) -> np.ndarray:
    """``n`` periodic porous media of ``size`` × ``size`` pixels from porespy's ``blobs`` (True = pore).

    ``blobiness`` is given per 64 pixels, so a feature has the same size in pixels at 64² and 128² (porespy's own
    blobiness scales features with the image). Each image has its own seed derived from ``seed``."""
    if not 0.0 < porosity < 1.0:
        raise ValueError(f"porosity must lie in (0, 1), got {porosity}")
    if blobiness <= 0:
        raise ValueError(f"blobiness must be > 0, got {blobiness}")
    import porespy as ps

    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=n)
    state = np.random.get_state()  # blobs seeds numpy's global generator: leave it as the caller had it
    try:
        return np.stack([np.asarray(ps.generators.blobs([size, size], porosity=porosity, seed=int(s),
                                                        blobiness=blobiness * size / 64, periodic=True), dtype=bool)
                         for s in seeds])
    finally:
        np.random.set_state(state)
