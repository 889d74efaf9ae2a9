"""Contract tests every generator must pass (parametrized over all registered generators)."""

import pytest

from conf.generator import GeneratorConfig, generator_config
from conf.schema import SeedsConfig, TargetConfig
from tasks.candidate import Candidate
from tasks.context import default_oxidation_states, make_conditions
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
        return generator_config(name=name, diffusion={"checkpoint": checkpoint, "steps": 30})
    if name == "gan":
        return generator_config(name=name, gan={"checkpoint": checkpoint})
    return generator_config(name=name)


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


def test_a_property_guide_steers_every_generator_away_from_formulas_it_weighs_zero(generator):
    """The guide (tasks.properties.guide) multiplies what each generator keeps by a weight per formula."""
    import numpy as np

    conditions = make_conditions(TARGET, 0)
    banned = {c.formula for c in generator.sample(4, conditions, 1)}
    generator.arms.guide = lambda formulas: np.array([0.0 if f in banned else 1.0 for f in formulas])
    later = generator.sample(6, conditions, 1)
    assert later and not banned & {c.formula for c in later}


def test_substitution_skips_proposals_already_made(seeds):
    gen = build_generator(generator_config(name="substitution"), seeds)
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


def test_substitution_widens_its_pool_when_it_runs_dry(seeds):
    conditions = make_conditions(TARGET, 0)
    gen = build_generator(generator_config(name="substitution", substitution={"threshold": 1e-2,
                                                                             "min_threshold": 1e-4}), seeds)
    narrow = gen.pool(conditions, 1e-2)
    tried = RoundFeedback(round_index=0, proposed_keys=[p.key for p in narrow])
    gen.update(tried)
    out = gen.sample(4, conditions, 0)
    assert gen.notes()["threshold_widened_to"] < 1e-2 and len(out) == 4
    assert all(1e-4 <= c.provenance.details["probability"] < 1e-2 for c in out)  # only the widened part is new
    fixed = build_generator(generator_config(name="substitution", substitution={"threshold": 1e-2,
                                                                               "min_threshold": 1e-2}), seeds)
    fixed.update(tried)
    assert fixed.sample(4, conditions, 0) == [] and fixed.notes() == {"exhausted": True}  # reported, not silent


def test_substitution_arms_are_compositions_shared_by_polymorphs(seeds):
    gen = build_generator(generator_config(name="substitution"), seeds)
    pool = gen.pool(make_conditions(TARGET, 0))
    assert all(p.arm == p.structure.composition.reduced_formula for p in pool)
    assert len({p.arm for p in pool}) < len(pool)  # arms recur: a weight moves the remaining polymorphs
    by_template = build_generator(generator_config(name="substitution", substitution={"arm": "template"}), seeds)
    assert all(p.arm == p.template for p in by_template.pool(make_conditions(TARGET, 0)))


@pytest.mark.parametrize("name", ["diffusion", "gan"])
def test_learned_generators_sample_in_float32_whatever_an_mlip_left_as_default(name, seeds):
    """A campaign process that screened with MACE leaves torch's default dtype at float64 (process-wide)."""
    import torch

    gen = build_generator(generator_config(name=name, **({"diffusion": {"steps": 20}} if name == "diffusion" else {})),
                          seeds)  # the shipped checkpoints
    assert gen.sample(2, make_conditions(TARGET, 0), seed=0)  # the model loads under float32
    torch.set_default_dtype(torch.float64)
    try:
        out = gen.sample(4, make_conditions(TARGET, 1), seed=1)
    finally:
        torch.set_default_dtype(torch.float32)
    assert out and all(isinstance(c, Candidate) for c in out)
