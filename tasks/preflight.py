"""Checks made before a campaign is written: everything that would make it fail later fails now."""

from __future__ import annotations

from conf.loader import ConfigError
from conf.schema import CampaignConfig
from tasks.generate import make_conditions
from tasks.generators.random_search import charge_balanced_compositions
from tasks.seeds import SeedSet
from tasks.seedset import build_seed_set


def preflight(cfg: CampaignConfig) -> SeedSet:
    """Validate what the schema cannot see and load the seed set.

    Raises
    ------
    ConfigError
        No charge-balanced composition of the target system fits ``target.max_atoms``.
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
    return build_seed_set(cfg.seeds, cfg.target)
