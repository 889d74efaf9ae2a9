"""Checks made before a campaign is written: everything that would make it fail later fails now."""

from __future__ import annotations

from conf.loader import ConfigError
from conf.schema import CampaignConfig
from tasks.context import make_conditions
from tasks.generators.random_search import charge_balanced_compositions
from tasks.seeds import SeedSet
from tasks.seedset import build_seed_set


def preflight(cfg: CampaignConfig) -> SeedSet:
    """Validate what the schema cannot see and load the seed set.

    Raises
    ------
    ConfigError
        No charge-balanced composition of the target system fits ``target.max_atoms``.
        ``evaluate.reference_hull`` or ``evaluate.elemental_references`` is missing, unreadable, or lacks an
        element of the target system.
        ``generator.diffusion|gan.checkpoint`` is missing or not a checkpoint of that family.
    SeedError
        The seed set is empty or an element has no reference structure.
    """
    conditions = make_conditions(cfg.target, 0)
    comps = charge_balanced_compositions(conditions.chemical_system, conditions.oxidation_states,
                                         conditions.max_atoms, conditions.include_subsystems)
    if not comps:
        raise ConfigError(f"target: no charge-balanced composition of {'-'.join(conditions.chemical_system)} with "
                          f"oxidation states {conditions.oxidation_states} fits target.max_atoms="
                          f"{conditions.max_atoms}; change target.oxidation_states or target.max_atoms")
    check_reference_hull(cfg)
    check_checkpoint(cfg)
    return build_seed_set(cfg.seeds, cfg.target, cfg.filter.matcher)


def check_checkpoint(cfg: CampaignConfig) -> None:
    """A diffusion or GAN campaign's checkpoint exists (a URL is fetched and checked now) and loads as that
    family's matloop checkpoint: found before the campaign row is written, not at its first generate step."""
    from conf.generator import CHECKPOINT_GENERATORS
    from tasks.errors import GeneratorError
    from tasks.generators.fetch import resolve_checkpoint

    name = cfg.generator.name
    if name not in CHECKPOINT_GENERATORS:
        return
    options = cfg.generator.options
    try:
        path = resolve_checkpoint(options.checkpoint, options.checkpoint_sha256, name)
        if not path.is_file():
            raise GeneratorError(f"no checkpoint file at {path}")
        from models.api import load_model

        load_model(path, kind=name)
    except (GeneratorError, ValueError, OSError, RuntimeError, KeyError) as exc:  # RuntimeError: weights
        raise ConfigError(f"generator.{name}.checkpoint: {exc}") from None


def check_reference_hull(cfg: CampaignConfig) -> None:
    """The reference hull (and elemental references, if given) can be read and cover the target system."""
    from tasks.errors import EvaluationError
    from tasks.metrics.hull import load_elemental_references, load_reference_hull

    ev, system = cfg.evaluate, cfg.target.chemical_system
    if ev.reference_hull is None:
        return
    try:
        hull = load_reference_hull(ev.reference_hull)
        refs = ev.elemental_references
        elemental = dict(refs) if isinstance(refs, dict) else load_elemental_references(refs) if refs else None
    except EvaluationError as exc:
        raise ConfigError(f"evaluate: {exc}") from None
    missing = sorted(set(system) - hull.elements)
    if missing:
        raise ConfigError(f"evaluate.reference_hull: {ev.reference_hull} has no phase containing {missing}, so it "
                          f"cannot judge stability in {'-'.join(system)}")
    if elemental is not None and set(system) - set(elemental):
        raise ConfigError(f"evaluate.elemental_references: no energy for {sorted(set(system) - set(elemental))}")
