"""Contract tests every generator must pass (parametrized over all registered generators)."""

import pytest

from conf.schema import GeneratorConfig, SeedsConfig, TargetConfig
from tasks.candidate import Candidate
from tasks.generate import default_oxidation_states, make_conditions
from tasks.generators import GENERATOR_NAMES, Generator, build_generator
from tasks.generators.random_search import charge_balanced_compositions
from tasks.results import RoundFeedback
from tasks.seedset import build_seed_set

TARGET = TargetConfig(chemical_system="Mg-Si-O", max_atoms=12)


@pytest.fixture(scope="module")
def seeds():
    return build_seed_set(SeedsConfig(), TARGET)


def _config(name: str, checkpoint=None) -> GeneratorConfig:
    if name == "diffusion":
        return GeneratorConfig(name=name, diffusion={"checkpoint": checkpoint, "steps": 30})
    if name == "gan":
        return GeneratorConfig(name=name, gan={"checkpoint": checkpoint})
    return GeneratorConfig(name=name)


CHECKPOINT_FIXTURES = {"diffusion": "tiny_diffusion", "gan": "tiny_gan"}


@pytest.fixture(params=GENERATOR_NAMES)
def generator(request, seeds) -> Generator:
    fixture = CHECKPOINT_FIXTURES.get(request.param)
    ckpt = request.getfixturevalue(fixture) if fixture else None
    return build_generator(_config(request.param, ckpt), seeds)


def test_samples_are_candidates_in_the_system_with_provenance(generator):
    assert isinstance(generator, Generator)
    conditions = make_conditions(TARGET, round_index=2)
    out = generator.sample(6, conditions, seed=11)
    assert 0 < len(out) <= 6
    for c in out:
        assert isinstance(c, Candidate)
        assert {el.symbol for el in c.structure.composition.elements} <= {"Mg", "Si", "O"}
        assert len(c.structure) <= TARGET.max_atoms
        p = c.provenance
        assert p.generator == generator.name and p.round_index == 2 and p.arm and p.key
        assert p.generator_identity == generator.identity() and p.conditions_hash == conditions.digest()


def test_sampling_is_reproducible(generator, seeds):
    conditions = make_conditions(TARGET, 0)
    again = build_generator(_config(generator.name, getattr(generator, "options", None) and
                                    getattr(generator.options, "checkpoint", None)), seeds)
    assert [c.hash for c in generator.sample(4, conditions, 5)] == [c.hash for c in again.sample(4, conditions, 5)]


def test_update_steers_sampling_away_from_zero_weight_arms(generator):
    conditions = make_conditions(TARGET, 0)
    first = generator.sample(4, conditions, 1)
    banned = {c.provenance.arm for c in first}
    generator.update(RoundFeedback(round_index=0, arm_weights={arm: 0.0 for arm in banned}))
    later = generator.sample(6, conditions, 2)
    assert later and not banned & {c.provenance.arm for c in later}


def test_substitution_skips_proposals_already_made(seeds):
    gen = build_generator(GeneratorConfig(name="substitution"), seeds)
    conditions = make_conditions(TARGET, 0)
    first = gen.sample(5, conditions, 0)
    gen.update(RoundFeedback(round_index=0, proposed_keys=[c.provenance.key for c in first]))
    second = gen.sample(5, conditions, 0)
    assert not {c.provenance.key for c in first} & {c.provenance.key for c in second}


def test_charge_balanced_compositions():
    comps = charge_balanced_compositions(["Mg", "Si", "O"], {"Mg": 2, "Si": 4, "O": -2}, 7, True)
    assert {"Mg": 1, "O": 1} in comps and {"Si": 1, "O": 2} in comps and {"Mg": 2, "Si": 1, "O": 4} in comps
    assert all(sum(c.values()) <= 7 for c in comps)
    assert charge_balanced_compositions(["Mg", "Al"], {"Mg": 2, "Al": 3}, 10, True) == []
    assert default_oxidation_states(["Mg", "Si", "O"]) == {"Mg": 2, "Si": 4, "O": -2}
