"""Statistics matching for microstructures (issue 22): a perfect generator scores zero error, a copying one is
caught by the translation-invariant nearest-training distance, and a wrong one is told apart."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.micro.evaluate import diversity, nearest_distances, score_condition, translation_distance
from tasks.micro.physics import porous_images


def test_translation_distance_sees_through_periodic_shifts():
    img = porous_images(0.5, 1.0, n=1, size=32, seed=0)[0]
    assert translation_distance(img, np.roll(img, (5, 11), axis=(0, 1))) == 0.0
    assert translation_distance(img, ~img) == pytest.approx(0.5, abs=0.2)  # the complement: far
    assert translation_distance(img, img) == 0.0


def test_a_generator_that_samples_the_real_distribution_scores_near_zero_and_a_wrong_one_does_not():
    real = porous_images(0.5, 1.0, n=12, size=64, seed=1)
    same = porous_images(0.5, 1.0, n=12, size=64, seed=2)  # new samples of the same condition
    finer = porous_images(0.5, 3.0, n=12, size=64, seed=2)  # right porosity, wrong length scale
    noise = np.random.default_rng(0).random((12, 64, 64)) < 0.5
    good, wrong, bad = (score_condition(real, g) for g in (same, finer, noise))
    assert good.volume_fraction_error < 0.02 and good.s2_rmse < 0.01
    assert wrong.volume_fraction_error < 0.02  # volume fraction alone cannot tell them apart ...
    assert wrong.s2_rmse > 3 * good.s2_rmse and wrong.mean_chord_rel_error > 3 * good.mean_chord_rel_error  # S2 can
    assert bad.s2_rmse > wrong.s2_rmse * 0.5 and bad.lineal_path_rmse > good.lineal_path_rmse
    assert 0.8 < good.diversity_ratio < 1.2
    # connectivity: white noise at porosity 0.5 shatters into many small clusters, the real blobs do not
    assert bad.components_rel_error > 5 * good.components_rel_error and bad.largest_cluster_error > 0.2
    assert good.percolation_error <= 0.25 and good.largest_cluster_error < 0.1


def test_memorisation_and_collapse_are_visible():
    train = porous_images(0.5, 1.0, n=8, size=32, seed=3)
    copies = np.stack([np.roll(train[i], 7 * i, axis=1) for i in range(4)])  # shifted training images
    fresh = porous_images(0.5, 1.0, n=4, size=32, seed=4)
    assert np.all(nearest_distances(copies, train) == 0.0)
    assert np.all(nearest_distances(fresh, train) > 0.1)
    collapsed = np.stack([fresh[0]] * 4)
    assert diversity(collapsed) == 0.0 and diversity(fresh) > 0.2
    score = score_condition(train, copies, train=train)
    assert score.nearest_train_distance == 0.0


def test_effective_diffusivity_error_when_asked():
    real = porous_images(0.7, 1.0, n=6, size=64, seed=5)
    score = score_condition(real, porous_images(0.7, 1.0, n=6, size=64, seed=6), with_property=True)
    blocked = score_condition(real, np.zeros((2, 64, 64), bool), with_property=True)  # nothing percolates
    assert score.d_eff_real > 0 and score.d_eff_rel_error < 0.25
    assert blocked.d_eff_rel_error == pytest.approx(1.0)
    assert score_condition(real, real).d_eff_rel_error is None  # not computed unless asked


def test_a_ratio_against_uniform_real_images_is_unknown_not_perfect():
    real = np.zeros((4, 16, 16), bool)  # an alloy still homogeneous after a short anneal: no chord, no variety
    generated = np.random.default_rng(0).random((4, 16, 16)) < 0.3
    score = score_condition(real, generated)
    assert score.mean_chord_rel_error is None and score.diversity_ratio is None
    assert score.volume_fraction_error > 0.2
