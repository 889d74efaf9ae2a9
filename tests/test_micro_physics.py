"""Microstructure data layer (issue 22): the Cahn–Hilliard solver, the porous-media generator, the statistics and
the effective diffusivity, on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.micro.physics import cahn_hilliard, porous_images, spinodal_images
from tasks.micro.stats import (
    chord_lengths,
    components,
    lineal_path,
    percolates,
    two_point_correlation,
    volume_fraction,
)


def stripes(size: int = 16, width: int = 4, vertical: bool = True) -> np.ndarray:
    cols = (np.arange(size) // width) % 2 == 0
    img = np.broadcast_to(cols, (size, size)).copy()
    return img if vertical else img.T


def correlation_length(img: np.ndarray) -> int:
    """First r where S2(r) falls to the uncorrelated value φ²: the pattern's length scale."""
    r, s2 = two_point_correlation(img)
    phi = volume_fraction(img)
    return int(r[np.argmax(s2 <= phi ** 2)])


def test_cahn_hilliard_conserves_the_mean_and_separates_inside_the_spinodal_only():
    rng = np.random.default_rng(0)
    inside = -0.1 + 0.05 * rng.uniform(-1, 1, (2, 64, 64))
    outside = -0.8 + 0.05 * rng.uniform(-1, 1, (64, 64))  # |φ̄| > 1/√3: metastable, noise decays
    a = cahn_hilliard(inside, steps=1000)
    b = cahn_hilliard(outside, steps=1000)
    assert a.shape == inside.shape and b.shape == outside.shape
    assert np.allclose(a.mean(axis=(1, 2)), inside.mean(axis=(1, 2)), atol=1e-10)
    assert abs(b.mean() - outside.mean()) < 1e-10
    assert np.median(np.abs(a)) > 0.9 and np.mean(np.abs(a) > 0.8) > 0.7  # two phases near φ = ±1, thin interfaces
    assert b.std() < outside.std()  # homogeneous: the noise decayed
    with pytest.raises(ValueError, match="dt"):
        cahn_hilliard(inside, steps=1, dt=0)


def test_spinodal_patterns_are_seeded_hold_their_composition_and_coarsen_with_annealing_time():
    early = spinodal_images(0.5, 50, n=2, size=64, seed=1)
    late = spinodal_images(0.5, 800, n=2, size=64, seed=1)
    assert early.dtype == bool and early.shape == (2, 64, 64)
    assert np.array_equal(early, spinodal_images(0.5, 50, n=2, size=64, seed=1))
    assert not np.array_equal(early, spinodal_images(0.5, 50, n=2, size=64, seed=2))
    assert abs(volume_fraction(late[0]) - 0.5) < 0.1
    assert abs(volume_fraction(spinodal_images(0.35, 400, n=1, size=64, seed=1)[0]) - 0.35) < 0.12
    assert correlation_length(late[0]) > correlation_length(early[0])  # coarsening
    with pytest.raises(ValueError, match="mean_composition"):
        spinodal_images(1.2, 10, n=1, size=16, seed=0)


def test_porous_media_have_their_porosity_wrap_around_and_leave_numpys_global_generator_alone():
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    imgs = porous_images(0.6, 1.0, n=3, size=64, seed=5)
    assert np.array_equal(np.random.get_state()[1], before)
    assert imgs.shape == (3, 64, 64) and imgs.dtype == bool
    assert np.array_equal(imgs, porous_images(0.6, 1.0, n=3, size=64, seed=5))
    assert all(abs(volume_fraction(i) - 0.6) < 0.02 for i in imgs)
    # periodic: the last and first rows agree as often as neighbouring rows inside the image
    inside = np.mean([np.mean(i[10] == i[11]) for i in imgs])
    across = np.mean([np.mean(i[-1] == i[0]) for i in imgs])
    assert abs(inside - across) < 0.15
    with pytest.raises(ValueError, match="porosity"):
        porous_images(1.0, 1.0, n=1, size=16, seed=0)


def test_two_point_correlation_is_the_volume_fraction_at_zero_and_its_square_far_away():
    img = np.random.default_rng(0).random((128, 128)) < 0.3  # no correlation beyond one pixel
    r, s2 = two_point_correlation(img)
    phi = volume_fraction(img)
    assert r[0] == 0 and s2[0] == pytest.approx(phi)
    assert np.allclose(s2[2:], phi ** 2, atol=0.01)
    r, s2 = two_point_correlation(stripes(16, 4))  # period 8 along x, constant along y
    assert s2[0] == pytest.approx(0.5) and s2[8] > s2[4]


def test_lineal_path_and_chords_of_stripes():
    img = stripes(16, 4)  # vertical stripes 4 wide: columns all-phase, rows in runs of 4
    z, lp = lineal_path(img)
    assert lp[0] == pytest.approx(0.5)
    # along columns every segment of a phase column stays in phase (0.5); along rows only runs shorter than 4
    assert lp[3] == pytest.approx(0.5 * (0.5 + 0.5 * 1 / 4))
    assert lp[4] == pytest.approx(0.25)
    assert set(chord_lengths(img, axis=1)) == {4}
    assert set(chord_lengths(img, axis=0)) == {16}
    shifted = np.roll(img, 6, axis=1)  # a stripe now crosses the periodic edge: still one chord of 4
    assert sorted(chord_lengths(shifted, axis=1)) == sorted(chord_lengths(img, axis=1))
    with pytest.raises(ValueError, match="two-phase"):
        chord_lengths(np.full((4, 4), 2))


def test_components_join_across_the_periodic_edge_and_percolation_follows_the_axis():
    img = stripes(16, 4)
    assert components(img) == {"n_components": 2, "largest_fraction": 0.5}
    shifted = np.roll(img, 6, axis=1)  # split at the edge in the picture, one cluster on the torus
    assert components(shifted)["n_components"] == 2
    assert percolates(img, axis=0) and not percolates(img, axis=1)
    assert percolates(stripes(16, 4, vertical=False), axis=1)
    assert components(np.zeros((8, 8), bool)) == {"n_components": 0, "largest_fraction": 0.0}


def test_effective_diffusivity_of_straight_channels_and_of_a_blocked_image():
    from tasks.micro.transport import effective_diffusivity

    channels = effective_diffusivity(stripes(32, 4), axis=0)  # straight channels along the flux
    assert channels.tau == pytest.approx(1.0, abs=0.05) and channels.d_eff == pytest.approx(0.5, abs=0.03)
    blocked = effective_diffusivity(stripes(32, 4), axis=1)  # the channels run across the flux
    assert blocked.tau == float("inf") and blocked.d_eff == 0.0
    porous = effective_diffusivity(porous_images(0.7, 1.0, n=1, size=64, seed=3)[0])
    assert porous.converged and porous.tau > 1.0 and 0 < porous.d_eff < 0.7
