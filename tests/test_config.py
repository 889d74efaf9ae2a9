"""Config schema and loader: defaults, overrides, and one clear error per bad key or value."""

from pathlib import Path

import pytest

from conf import ConfigError, default_config_path, load_config
from conf.schema import TargetRange


def test_default_config_loads():
    cfg = load_config()
    assert cfg.target.chemical_system == ["Mg", "Si", "O"]
    assert cfg.relax.backend in ("auto", "mace", "chgnet")
    assert cfg.store_url().startswith("sqlite:///") and cfg.store_url().endswith("matloop.db")
    assert default_config_path().is_file()


def test_overrides_parse_yaml_values():
    cfg = load_config(overrides=["rounds=5", "relax.fmax=0.02", "target.chemical_system=Li-Fe-O",
                                 "target.oxidation_states={Li: 1, Fe: 3, O: -2}", "generator.name=random"])
    assert cfg.rounds == 5 and cfg.relax.fmax == 0.02
    assert cfg.target.chemical_system == ["Li", "Fe", "O"] and cfg.generator.name == "random"


def test_the_generator_block_holds_the_named_generators_options_only():
    """A discriminated union: switching generators by --set drops the file's options of the others; options
    given for another generator than the named one are an error, not ignored."""
    cfg = load_config(overrides=["generator.name=diffusion", "generator.diffusion.steps=50"])
    assert cfg.generator.name == "diffusion" and cfg.generator.options.steps == 50
    assert set(cfg.model_dump()["generator"]) == {"name", "n_per_round", "property_guidance", "diffusion"}
    assert not hasattr(cfg.generator, "substitution")
    with pytest.raises(ConfigError, match="generator.random is given but generator.name is 'diffusion'"):
        load_config(overrides=["generator.random.max_attempts=5", "generator.name=diffusion"])
    with pytest.raises(ConfigError, match="generator.name=gan needs generator.gan.checkpoint"):
        load_config(overrides=["generator.name=gan", "generator.gan.checkpoint=null"])


@pytest.mark.parametrize("override, needle", [
    ("relax.fmaxx=0.1", "relax.fmaxx"),
    ("relax.backend=vasp", "relax.backend"),
    ("rounds=0", "rounds"),
    ("target.chemical_system=Mg-Xx-O", "unknown element 'Xx'"),
    ("filter.min_distance=0.3", "filter.min_distance"),
    ("target.properties={band_gap: {min: 3, max: 1}}", "min (3.0) is larger than max (1.0)"),
    ("generator.gan.batch_size=8", "generator: Value error, generator.gan is given but generator.name is "
                                   "'substitution'"),
    ("generator.name=vae", "generator: generator.name must be one of substitution, random, diffusion, gan"),
    ("generator.substitution.treshold=1", "generator.substitution.treshold: Extra inputs"),
])
def test_bad_config_is_one_clear_error(override, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=[override])
    assert needle in str(exc.value)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["rounds"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_oxidation_states_must_cover_the_system():
    with pytest.raises(ConfigError, match="missing \\['O'\\]"):
        load_config(overrides=["target.oxidation_states={Mg: 2, Si: 4}"])


def test_target_range_semantics():
    assert TargetRange(max=0.1).contains(0.05) and not TargetRange(max=0.1).contains(0.2)
    assert TargetRange(value=1.0).contains(1.04, tolerance=0.05)
    with pytest.raises(ValueError):
        TargetRange()


TRAIN_CONFIGS = sorted((Path(__file__).parents[1] / "conf").glob("train_*.yaml"))


def test_the_shipped_training_configs_are_found():  # an empty glob would skip the test below silently
    assert {"train_perov5.yaml", "train_gan_perov5.yaml"} <= {p.name for p in TRAIN_CONFIGS}


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_training_config_validates(path):
    """The configs README's benchmarks train from are TrainRunConfigs (data paths need not exist here)."""
    import yaml

    from conf.training import MODEL_CONFIGS, TrainRunConfig

    run = TrainRunConfig.model_validate(yaml.safe_load(path.read_text()))
    assert isinstance(run.model, MODEL_CONFIGS[run.generator]) and run.out.suffix == ".pt"
