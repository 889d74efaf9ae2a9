"""Structure generators behind one interface, chosen by ``generator.name`` in the config."""

from __future__ import annotations

from conf.generator import GENERATOR_NAMES, GeneratorConfig
from tasks.errors import GeneratorError
from tasks.generators.base import Generator
from tasks.seeds import SeedSet


def build_generator(cfg: GeneratorConfig, seeds: SeedSet) -> Generator:
    """Construct the generator named by ``cfg.name`` (one of :data:`GENERATOR_NAMES`)."""
    if cfg.name == "substitution":
        from tasks.generators.substitution import SubstitutionGenerator

        return SubstitutionGenerator(seeds.templates, cfg.options)
    if cfg.name == "random":
        from tasks.generators.random_search import RandomGenerator

        return RandomGenerator(cfg.options)
    if cfg.name == "diffusion":
        from tasks.generators.diffusion import DiffusionGenerator

        return DiffusionGenerator(cfg.options)
    if cfg.name == "gan":
        from tasks.generators.gan import GANGenerator

        return GANGenerator(cfg.options)
    raise GeneratorError(f"unknown generator {cfg.name!r}; allowed: {', '.join(GENERATOR_NAMES)}")


__all__ = ["GENERATOR_NAMES", "Generator", "build_generator"]
