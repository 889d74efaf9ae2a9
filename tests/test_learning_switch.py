"""``feedback.enabled``: with learning off nothing a generator samples from changes; with it on, round 1 does
(substitution too: its arms are compositions, so a weight moves the remaining polymorphs of a formula).

A contract over every generator: round 0 is drawn, its candidates get outcomes (the first arm on the hull, every
other arm far above it), feedback is computed with learning on and off, and round 1 is drawn from each.
"""

from __future__ import annotations

import pytest

from conf.generator import GeneratorConfig, generator_config
from conf.schema import FeedbackConfig, SeedsConfig, TargetConfig
from tasks.context import make_conditions
from tasks.feedback import Outcome, compute_feedback
from tasks.generators import GENERATOR_NAMES, build_generator
from tasks.results import RoundFeedback
from tasks.seedset import build_seed_set

TARGET = TargetConfig(chemical_system="Mg-Si-O", max_atoms=12)
CHECKPOINT_FIXTURES = {"diffusion": "tiny_diffusion", "gan": "tiny_gan"}


@pytest.fixture(scope="module")
def seeds():
    return build_seed_set(SeedsConfig(), TARGET)


def _config(name: str, checkpoint=None) -> GeneratorConfig:
    options = {"diffusion": {"checkpoint": checkpoint, "steps": 30, "oversample": 4.0},
               "gan": {"checkpoint": checkpoint, "oversample": 4.0}}
    return generator_config(name=name, **({name: options[name]} if name in options else {}))


def _feedback(round0, enabled: bool) -> RoundFeedback:
    best = round0[0].provenance.arm
    outcomes = [Outcome(c.provenance.arm, 0, 0.0 if c.provenance.arm == best else 1.0) for c in round0]
    cfg = FeedbackConfig(enabled=enabled, prior_strength=1e-6)
    return compute_feedback(0, outcomes, [c.provenance.key for c in round0], cfg, 0.1)


@pytest.mark.parametrize("name", GENERATOR_NAMES)
def test_learning_off_changes_nothing_and_learning_on_changes_round_1(name, seeds, request):
    fixture = CHECKPOINT_FIXTURES.get(name)
    cfg = _config(name, request.getfixturevalue(fixture) if fixture else None)
    generator = build_generator(cfg, seeds)
    identity = generator.identity()
    round0 = generator.sample(8, make_conditions(TARGET, 0), seed=11)
    assert len({c.provenance.arm for c in round0}) > 1, "the test needs round 0 to try several arms"
    on, off = _feedback(round0, True), _feedback(round0, False)
    assert off.arm_weights == {} and on.arm_weights  # learning off: every arm keeps its prior weight
    assert off.proposed_keys == on.proposed_keys  # what was tried is remembered either way

    def round1(feedback: RoundFeedback | None):
        g = build_generator(cfg, seeds)
        if feedback is not None:
            g.update(feedback)
        return g, [c.hash for c in g.sample(8, make_conditions(TARGET, 1), seed=12)]

    g_off, off_draw = round1(off)
    _, plain_draw = round1(RoundFeedback(round_index=0, proposed_keys=off.proposed_keys))
    g_on, on_draw = round1(on)
    assert off_draw == plain_draw  # no update: the same draw as a generator that never saw an outcome
    assert on_draw != off_draw  # learning on moves what round 1 samples
    assert g_off.identity() == g_on.identity() == identity  # no checkpoint or setting changed
    assert make_conditions(TARGET, 1) == make_conditions(TARGET, 1)  # conditions do not depend on feedback
