"""Feedback re-weights arms towards those whose candidates land near the hull."""

import math

import pytest

from conf.schema import FeedbackConfig
from tasks.feedback import compute_feedback
from tasks.results import RoundFeedback


def test_weights_move_towards_scores():
    cfg = FeedbackConfig(temperature=0.05, learning_rate=0.5)
    fb = compute_feedback(0, [("good", 0, 0.0), ("bad", 0, 0.5), ("failed", 0, None)], None, ["k1"], cfg, 0.1)
    assert fb.arm_weights["good"] == pytest.approx(1.0)
    assert fb.arm_weights["bad"] == pytest.approx(0.5 + 0.5 * math.exp(-10))
    assert fb.arm_weights["failed"] == pytest.approx(0.5)
    assert fb.n_evaluated == 2 and fb.n_stable == 1 and fb.best_e_hull == 0.0 and fb.proposed_keys == ["k1"]
    assert fb.arm_stats["failed"].best_e_hull is None


def test_only_this_rounds_candidates_update_weights():
    prev = RoundFeedback(round_index=0, arm_weights={"old": 0.3, "good": 0.9})
    fb = compute_feedback(1, [("old", 0, 0.0), ("good", 1, 0.05)], prev, [], FeedbackConfig(learning_rate=1.0), 0.1)
    assert fb.arm_weights["old"] == 0.3  # no new candidate from this arm
    assert fb.arm_weights["good"] == pytest.approx(math.exp(-1))
    assert RoundFeedback.model_validate(fb.model_dump(mode="json")) == fb  # survives the store's JSON
