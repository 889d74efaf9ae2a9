"""Feedback weights arms by shrinkage towards the campaign's mean score: good arms rise above untried ones."""

import math

import pytest

from conf.schema import FeedbackConfig
from tasks.feedback import Outcome, compute_feedback
from tasks.generators.base import ArmWeights
from tasks.results import RoundFeedback


def test_good_arms_rise_above_untried_ones_and_poor_ones_fall_below():
    cfg = FeedbackConfig(temperature=0.05, prior_strength=1.0)
    outcomes = [Outcome("good", 0, 0.0), Outcome("bad", 0, 0.5), Outcome("failed", 0, None)]
    fb = compute_feedback(0, outcomes, ["k1"], cfg, 0.1)
    prior = (1.0 + math.exp(-10) + 0.0) / 3  # the campaign's mean score
    assert fb.prior_weight == pytest.approx(prior)
    assert fb.arm_weights["good"] == pytest.approx((prior + 1.0) / 2) and fb.arm_weights["good"] > prior
    assert fb.arm_weights["bad"] == pytest.approx((prior + math.exp(-10)) / 2) and fb.arm_weights["bad"] < prior
    assert fb.arm_weights["failed"] == pytest.approx(prior / 2)
    assert fb.n_evaluated == 2 and fb.n_stable == 1 and fb.best_e_hull == 0.0 and fb.proposed_keys == ["k1"]
    assert fb.arm_stats["failed"].best_e_hull is None
    arms = ArmWeights()
    arms.update(fb)
    assert arms.weight("untried") == fb.prior_weight < arms.weight("good")
    assert RoundFeedback.model_validate(fb.model_dump(mode="json")) == fb  # survives the store's JSON


def test_more_evidence_moves_an_arm_further_from_the_prior():
    cfg = FeedbackConfig(prior_strength=2.0)
    once = compute_feedback(0, [Outcome("a", 0, 0.0), Outcome("b", 0, None)], [], cfg, 0.1)
    thrice = compute_feedback(2, [Outcome("a", r, 0.0) for r in range(3)] + [Outcome("b", r, None) for r in range(3)],
                              [], cfg, 0.1)
    assert once.prior_weight == thrice.prior_weight == 0.5
    assert thrice.arm_weights["a"] > once.arm_weights["a"] > 0.5 > once.arm_weights["b"] > thrice.arm_weights["b"]


def test_unconverged_relaxations_are_not_scored_and_rejections_score_zero():
    cfg = FeedbackConfig(prior_strength=1.0)
    fb = compute_feedback(0, [Outcome("slow", 0, None, scored=False), Outcome("ok", 0, 0.0),
                              Outcome("rejected", 0, None)], [], cfg, 0.1)
    assert "slow" not in fb.arm_weights and fb.arm_stats["slow"].n == 0 and fb.arm_stats["slow"].mean_score is None
    assert fb.prior_weight == pytest.approx(0.5)  # the ok arm (1) and the rejection (0)
    assert fb.arm_weights["rejected"] == pytest.approx(0.25)


def test_weights_are_floored_and_learning_off_keeps_the_prior():
    cfg = FeedbackConfig(min_weight=0.05)
    fb = compute_feedback(0, [Outcome("a", 0, None), Outcome("b", 0, None)], [], cfg, 0.1)
    assert fb.prior_weight == 0.05 and fb.arm_weights == {"a": 0.05, "b": 0.05}  # every observation scored 0
    off = compute_feedback(0, [Outcome("a", 0, 0.0), Outcome("b", 0, None)], ["k"], FeedbackConfig(enabled=False),
                           0.1)
    assert off.arm_weights == {} and off.prior_weight == 1.0 and off.proposed_keys == ["k"]


def test_weights_do_not_depend_on_the_order_or_the_round_that_computes_them():
    cfg = FeedbackConfig()
    outcomes = [Outcome("a", 0, 0.02), Outcome("b", 1, 0.3), Outcome("a", 1, None), Outcome("c", 1, 0.0)]
    assert (compute_feedback(1, outcomes, [], cfg, 0.1).arm_weights
            == compute_feedback(1, outcomes[::-1], [], cfg, 0.1).arm_weights)


def test_stored_configs_with_learning_rate_still_load():
    assert FeedbackConfig.model_validate({"learning_rate": 0.5}).prior_strength == pytest.approx(1.0)
    assert FeedbackConfig.model_validate({"learning_rate": 0.25}).prior_strength == pytest.approx(3.0)
    with pytest.raises(ValueError, match="learning_rate"):
        FeedbackConfig.model_validate({"learning_rate": 2})
