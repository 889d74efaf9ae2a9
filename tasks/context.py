"""What the steps of a round derive from a campaign's configuration: the round's generator-facing conditions,
its deterministic RNG seed and the campaign's relaxation context (config, MLIP, settings hash).

Shared by generation, the validity filter, preflight, relaxation, evaluation, feedback, acquisition, learning,
DFT and the metrics, so it lives below all of them. Pure functions over the config and the store's records."""

from __future__ import annotations

import hashlib
import json
from typing import NamedTuple

from pymatgen.core.periodic_table import Element

from conf.schema import CampaignConfig, RelaxConfig, TargetConfig
from tasks.mlip import MLIPSpec
from tasks.results import Conditions


def default_oxidation_states(elements: list[str]) -> dict[str, int]:
    """Most electronegative element: its most negative common oxidation state; others: highest positive."""
    anion = max(elements, key=lambda el: Element(el).X)
    states = {}
    for el in elements:
        common = Element(el).common_oxidation_states or Element(el).oxidation_states
        states[el] = min(common) if el == anion and min(common) < 0 else max(common)
    return states


def make_conditions(target: TargetConfig, round_index: int) -> Conditions:
    """The generator-facing conditions of a round."""
    ox = target.oxidation_states or default_oxidation_states(target.chemical_system)
    return Conditions(round_index=round_index, chemical_system=list(target.chemical_system), oxidation_states=ox,
                      include_subsystems=target.include_subsystems, max_atoms=target.max_atoms,
                      property_targets=dict(target.properties))


def round_seed(campaign_seed: int, round_index: int) -> int:
    """Deterministic per-round RNG seed: a resumed round proposes the same batch."""
    return (campaign_seed * 1_000_003 + round_index * 7919) % 2**32


def relax_settings_hash(cfg: RelaxConfig) -> str:
    """Stable 12-hex hash of the settings that change a relaxation's outcome (not chunking, retries, reuse or
    the backend name: the MLIP's identity is recorded beside it). The engine counts: batched FIRE is not ASE's
    step for step."""
    exclude = {"reuse"} | ({"engine"} if cfg.engine == "ase" else set())  # hashes from before engines existed hold
    dump = cfg.model_copy(update={"chunk_size": 1, "retries": 0, "backend": "auto"}).model_dump(mode="json",
                                                                                               exclude=exclude)
    return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:12]


class RelaxContext(NamedTuple):
    """What every relaxation-related step of a campaign needs: its config, MLIP and settings hash."""

    cfg: CampaignConfig
    spec: MLIPSpec
    settings: str


def relax_context(store, campaign_id: str) -> RelaxContext:
    """The campaign's config, resolved MLIP (set when the campaign started) and relaxation settings hash."""
    cfg = store.config(campaign_id)
    spec = MLIPSpec.model_validate(store.campaign(campaign_id).mlip_spec)
    return RelaxContext(cfg, spec, relax_settings_hash(cfg.relax))
