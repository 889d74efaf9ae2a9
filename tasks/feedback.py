"""Feedback: re-weight generator arms by how close their candidates landed to the hull.

Each candidate scores ``exp(-max(E_hull, 0) / T)`` (1 on the hull, towards 0 far above it); a failed
relaxation, or one that relaxed into a known phase or an earlier candidate, scores 0. An arm's weight
moves towards the mean score of its candidates of this round:
``w <- (1 - lr) * w + lr * mean_score`` (prior weight 1 for arms not yet tried).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence

from prefect import task

from conf.schema import FeedbackConfig
from tasks.results import ArmStat, RoundFeedback


def compute_feedback(round_index: int, outcomes: Sequence[tuple[str, int, float | None]],
                     previous: RoundFeedback | None, proposed_keys: Sequence[str], cfg: FeedbackConfig,
                     stability_threshold: float) -> RoundFeedback:
    """Feedback after ``round_index``.

    Parameters
    ----------
    outcomes
        ``(arm, round the candidate was proposed in, E_hull in eV/atom or None if relaxation failed)`` for
        every candidate of the campaign that went to relaxation.
    """
    scores: dict[str, list[float]] = defaultdict(list)
    hulls: dict[str, list[float]] = defaultdict(list)
    fresh: dict[str, list[float]] = defaultdict(list)
    for arm, r, ehull in outcomes:
        score = 0.0 if ehull is None else math.exp(-max(ehull, 0.0) / cfg.temperature)
        scores[arm].append(score)
        if ehull is not None:
            hulls[arm].append(ehull)
        if r == round_index:
            fresh[arm].append(score)
    weights = dict(previous.arm_weights) if previous else {}
    for arm, s in fresh.items():
        weights[arm] = (1 - cfg.learning_rate) * weights.get(arm, 1.0) + cfg.learning_rate * sum(s) / len(s)
    stats = {arm: ArmStat(n=len(s), mean_score=sum(s) / len(s), best_e_hull=min(hulls[arm], default=None))
             for arm, s in scores.items()}
    all_hulls = [h for hs in hulls.values() for h in hs]
    return RoundFeedback(round_index=round_index, arm_weights=weights, arm_stats=stats,
                         proposed_keys=sorted(proposed_keys), n_evaluated=len(all_hulls),
                         n_stable=sum(h <= stability_threshold for h in all_hulls),
                         best_e_hull=min(all_hulls, default=None))


@task(name="feedback")
def feedback_task(store_url: str, campaign_id: str, round_index: int) -> dict:
    """Compute and store the round's feedback; completes the round."""
    from tasks.relax import relax_context
    from tasks.store import Store

    start = time.time()
    store = Store(store_url)
    cfg, spec, shash = relax_context(store, campaign_id)
    ehull = {h: v for h, name, v, _, source in store.properties(campaign_id)
             if name == "e_above_hull" and source == "mlip"}
    # a candidate that relaxed into a known phase or an earlier candidate found nothing new: score 0
    outcomes = [(c.provenance["arm"], c.round_index, None if c.relaxed_match else ehull.get(c.hash))
                for c, _ in store.relaxations(campaign_id, spec.identity, shash)]
    fb = compute_feedback(round_index, outcomes, store.feedback_before(campaign_id, round_index),
                          store.proposal_keys(campaign_id), cfg.feedback, cfg.evaluate.stability_threshold)
    top = sorted(fb.arm_weights.items(), key=lambda kv: -kv[1])[:5]
    store.advance_round(campaign_id, round_index, "completed", {"top_arms": dict(top)}, feedback=fb)
    return {"arms": len(fb.arm_weights), "start": start, "end": time.time(), "compute_s": time.time() - start}
