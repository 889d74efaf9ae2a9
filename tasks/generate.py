"""Generation step: conditions for a round, and a batch of candidates from the configured generator."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from prefect import get_run_logger, task

from conf.generator import CHECKPOINT_GENERATORS, GeneratorConfig
from conf.schema import CampaignConfig
from tasks.candidate import Candidate
from tasks.context import make_conditions, round_seed
from tasks.generators import build_generator
from tasks.learn import current_checkpoint
from tasks.results import Conditions, RoundFeedback, TaskRecord
from tasks.seeds import SeedSet

if TYPE_CHECKING:
    from tasks.properties.guide import PropertyGuide


def generate_candidates(cfg: GeneratorConfig, seeds: SeedSet, conditions: Conditions,
                        feedback: RoundFeedback | None, seed: int, guide: PropertyGuide | None = None
                        ) -> tuple[list[Candidate], dict]:
    """Build the generator, apply the last feedback (and the property guide), draw ``cfg.n_per_round``
    candidates; also the generator's notes on the draw (a widened pool, an exhausted space, what guidance did)."""
    generator = build_generator(cfg, seeds)
    if feedback is not None:
        generator.update(feedback)
    generator.arms.guide = guide
    candidates = generator.sample(cfg.n_per_round, conditions, seed)
    notes = generator.notes()
    if guide is not None:
        notes = {**notes, "property_guidance": guide.report([c.formula for c in candidates])}
    return candidates, notes


def round_guide(cfg: CampaignConfig, conditions: Conditions, store, campaign_id: str
                ) -> PropertyGuide | None:
    """The round's predictor guide (None without a predictor target or with ``generator.property_guidance`` 0),
    towards the round's (possibly learned) targets, with the correction retrained on the campaign's DFT/lab values
    (none with learning off). Reads the store only when there is a predictor to guide with."""
    from tasks.properties.guide import property_guide
    from tasks.properties.targets import Correction, campaign_correction, predictor_for

    predictor = predictor_for(cfg) if cfg.generator.property_guidance > 0 else None
    if predictor is None:
        return None
    correction = (campaign_correction(store.properties(campaign_id), predictor.property, store.formulas(campaign_id))
                  if cfg.feedback.enabled else Correction())
    return property_guide(predictor, dict(conditions.property_targets), cfg.generator.property_guidance, correction)


@task(name="generate")
def generate_task(store_url: str, campaign_id: str, round_index: int) -> TaskRecord:
    """Generate a round's batch and store it (candidates, proposals, conditions) in one transaction."""
    from tasks.store import Store

    start = time.time()
    store = Store(store_url)
    cfg: CampaignConfig = store.config(campaign_id)
    conditions = make_conditions(cfg.target, round_index)
    generator_cfg = cfg.generator
    learned: dict = {}
    if generator_cfg.name in CHECKPOINT_GENERATORS and cfg.feedback.enabled and cfg.learn.condition_update:
        from tasks.conditions import campaign_hits, learned_targets
        from tasks.learn import best_labels

        hits = campaign_hits(best_labels(store.properties(campaign_id)), cfg.evaluate.stability_threshold)
        targets, learned = learned_targets(conditions.property_targets, hits, cfg.learn.condition_margin,
                                           cfg.learn.condition_min_hits)
        conditions = conditions.model_copy(update={"property_targets": targets})
    if generator_cfg.name in CHECKPOINT_GENERATORS:  # the checkpoint the last learn step wrote, if any
        checkpoint = current_checkpoint(cfg, [(r.index, r.summary) for r in store.rounds(campaign_id)], round_index)
        options = generator_cfg.options.model_copy(update={"checkpoint": str(checkpoint)})
        generator_cfg = generator_cfg.model_copy(update={generator_cfg.name: options})
    guide = round_guide(cfg, conditions, store, campaign_id)
    candidates, notes = generate_candidates(generator_cfg, store.seed_set(campaign_id), conditions,
                                            store.feedback_before(campaign_id, round_index),
                                            round_seed(cfg.seed, round_index), guide)
    compute = time.time() - start
    if len(candidates) < cfg.generator.n_per_round:
        get_run_logger().warning("round %d: %s proposed %d of %d candidates%s", round_index, cfg.generator.name,
                                 len(candidates), cfg.generator.n_per_round, f" ({notes})" if notes else "")
    summary = {"generated": len(candidates), "generator": cfg.generator.name,
               "generated_formulas": dict(Counter(c.formula for c in candidates)), "generator_notes": notes,
               **({"conditions_learned": learned} if learned else {})}
    store.save_proposals(campaign_id, round_index, candidates, conditions, summary)
    return TaskRecord.since(start, compute_s=compute)
