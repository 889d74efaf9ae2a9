"""Statistics matching: generated images of one process condition against the real images of that condition.

Per condition (:func:`score_condition`): the error of the mean volume fraction, of the mean S2 curve and of the mean
lineal-path curve (root mean square over r, in probability units), of the mean chord length (relative), of the
connectivity (mean cluster count, relative; share of the phase in its largest cluster; share of images that
percolate along axis 0), of the
effective diffusivity (relative, when computed), the diversity of the generated images against that of the real
ones, and memorisation: each generated image's distance to its nearest training image, translation-invariant
(a periodic image shifted is the same microstructure), as a fraction of pixels that differ. A ratio whose real
denominator is zero (uniform real images: no chord, no diversity) is ``None``, not a perfect score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tasks.micro.stats import (
    chord_lengths,
    components,
    lineal_path,
    percolates,
    two_point_correlation,
    volume_fraction,
)


@dataclass(frozen=True)
class ImageStats:
    """Statistics of a set of images (means over the set)."""

    volume_fraction: np.ndarray  # (n,)
    s2: np.ndarray  # (r_max + 1,)
    lineal_path: np.ndarray  # (z_max + 1,)
    mean_chord: float  # pixels, along rows and columns
    d_eff: np.ndarray | None  # (n,) effective diffusivity along axis 0, when asked
    n_components: float  # mean number of clusters of the phase (periodic, 4-connected)
    largest_fraction: float  # mean share of the phase in its largest cluster
    percolating: float  # share of the images whose phase connects the faces along axis 0


def image_stats(images: np.ndarray, with_property: bool = False) -> ImageStats:
    imgs = np.asarray(images, dtype=bool)
    if imgs.ndim != 3 or len(imgs) == 0:
        raise ValueError(f"expected a non-empty stack of 2D images, got shape {imgs.shape}")
    s2 = np.mean([two_point_correlation(i)[1] for i in imgs], axis=0)
    lp = np.mean([lineal_path(i)[1] for i in imgs], axis=0)
    chords = np.concatenate([np.concatenate([chord_lengths(i, 0), chord_lengths(i, 1)]) for i in imgs])
    d_eff = None
    if with_property:
        from tasks.micro.transport import effective_diffusivity

        d_eff = np.array([effective_diffusivity(i).d_eff for i in imgs])
    clusters = [components(i) for i in imgs]
    return ImageStats(np.array([volume_fraction(i) for i in imgs]), s2, lp,
                      float(chords.mean()) if chords.size else 0.0, d_eff,
                      float(np.mean([c["n_components"] for c in clusters])),
                      float(np.mean([c["largest_fraction"] for c in clusters])),
                      float(np.mean([percolates(i, axis=0) for i in imgs])))


def translation_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels that differ between ``a`` and ``b`` at the periodic shift that aligns them best."""
    x = np.where(np.asarray(a, dtype=bool), 1.0, -1.0)
    y = np.where(np.asarray(b, dtype=bool), 1.0, -1.0)
    # agreements - disagreements at every shift, by FFT cross-correlation of the ±1 images
    corr = np.fft.irfft2(np.fft.rfft2(x) * np.conj(np.fft.rfft2(y)), s=x.shape)
    return float((x.size - np.rint(corr.max())) / (2 * x.size))  # integer pixel counts: no rounding residue


def nearest_distances(generated: np.ndarray, train: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Each generated image's translation-invariant distance to its nearest training image (the training set's
    transforms are taken ``chunk`` images at a time, so memory stays flat in its size)."""
    g = np.where(np.asarray(generated, dtype=bool), 1.0, -1.0)
    shape, n = g.shape[1:], g[0].size
    g_hat = np.fft.rfft2(g)
    best = np.full(len(g), -np.inf)
    train = np.asarray(train, dtype=bool)
    for start in range(0, len(train), chunk):
        t_hat = np.conj(np.fft.rfft2(np.where(train[start:start + chunk], 1.0, -1.0)))
        for i in range(len(g)):
            corr = np.fft.irfft2(g_hat[i][None] * t_hat, s=shape)
            best[i] = max(best[i], corr.reshape(len(t_hat), -1).max())
    return (n - np.rint(best)) / (2 * n)


def diversity(images: np.ndarray, max_pairs: int = 200, seed: int = 0) -> float:
    """Mean translation-invariant distance between pairs of the set (at most ``max_pairs`` random pairs)."""
    imgs = np.asarray(images, dtype=bool)
    if len(imgs) < 2:
        return 0.0
    pairs = [(i, j) for i in range(len(imgs)) for j in range(i + 1, len(imgs))]
    if len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = [pairs[k] for k in rng.choice(len(pairs), size=max_pairs, replace=False)]
    return float(np.mean([translation_distance(imgs[i], imgs[j]) for i, j in pairs]))


@dataclass(frozen=True)
class ConditionScore:
    """Generated vs real images of one condition; errors are 0 for a perfect match."""

    n_real: int
    n_generated: int
    volume_fraction_real: float
    volume_fraction_error: float  # |mean generated - mean real|
    s2_rmse: float  # over r = 0 ... size/2
    lineal_path_rmse: float
    mean_chord_rel_error: float | None  # None when the real images have no chord (uniform)
    components_rel_error: float | None  # mean cluster count, relative; None when the real images have no cluster
    largest_cluster_error: float  # |share of the phase in its largest cluster, generated - real|
    percolation_error: float  # |share of images percolating along axis 0, generated - real|
    d_eff_real: float | None
    d_eff_rel_error: float | None
    diversity_ratio: float | None  # generated diversity / real diversity (1: as varied); None: the real are identical
    nearest_train_distance: float | None  # median over generated images; 0 = a copy of a training image

    def as_dict(self) -> dict:
        return asdict(self)


def score_condition(real: np.ndarray, generated: np.ndarray, train: np.ndarray | None = None,
                    with_property: bool = False) -> ConditionScore:
    return compare(real, generated, image_stats(real, with_property), image_stats(generated, with_property), train)


def compare(real: np.ndarray, generated: np.ndarray, r: ImageStats, g: ImageStats,
            train: np.ndarray | None = None) -> ConditionScore:
    """The score of ``generated`` against ``real`` from their statistics ``g`` and ``r`` (computed once by the
    caller, who may plot them too); the property is compared when both carry it."""
    d_real = diversity(real)
    d_eff_real = d_eff_err = None
    if r.d_eff is not None and g.d_eff is not None:
        d_eff_real = float(r.d_eff.mean())
        d_eff_err = float(abs(g.d_eff.mean() - d_eff_real) / d_eff_real) if d_eff_real > 0 else None
    return ConditionScore(
        n_real=len(real), n_generated=len(generated), volume_fraction_real=float(r.volume_fraction.mean()),
        volume_fraction_error=float(abs(g.volume_fraction.mean() - r.volume_fraction.mean())),
        s2_rmse=float(np.sqrt(np.mean((g.s2 - r.s2) ** 2))),
        lineal_path_rmse=float(np.sqrt(np.mean((g.lineal_path - r.lineal_path) ** 2))),
        mean_chord_rel_error=float(abs(g.mean_chord - r.mean_chord) / r.mean_chord) if r.mean_chord else None,
        components_rel_error=float(abs(g.n_components - r.n_components) / r.n_components) if r.n_components else None,
        largest_cluster_error=float(abs(g.largest_fraction - r.largest_fraction)),
        percolation_error=float(abs(g.percolating - r.percolating)),
        d_eff_real=d_eff_real, d_eff_rel_error=d_eff_err,
        diversity_ratio=float(diversity(generated) / d_real) if d_real > 0 else None,
        nearest_train_distance=float(np.median(nearest_distances(generated, train))) if train is not None else None)
