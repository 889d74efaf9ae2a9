"""Feedback: re-weight generator arms by how close their candidates landed to the hull.

Each candidate scores ``exp(-max(E_hull, 0) / T)`` (1 on the hull, towards 0 far above it); a failed
relaxation, or one that relaxed into a known phase or an earlier candidate, scores 0. An arm's weight
moves towards the mean score of its candidates of this round:
``w <- (1 - lr) * w + lr * mean_score`` (prior weight 1 for arms not yet tried).

Lab measurements take precedence over computed values: a measured E_hull replaces the MLIP one; a measured
target property (or ``synthesized``) makes the score 1 when it meets the target and ``lab.miss_score``
when it does not. A candidate with a measurement that is new since the last feedback counts as fresh.

With ``feedback.enabled: false`` (a benchmark's learning-off control) the scores are still computed and
reported, but no weight moves: every generator samples as it would with no feedback at all, except that the
proposals already made are remembered.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from prefect import task

from conf.schema import FeedbackConfig, TargetRange
from tasks.results import ArmStat, RoundFeedback


class Outcome(NamedTuple):
    arm: str
    round_index: int  # round the candidate was proposed in
    e_hull: float | None  # eV/atom (measured if measured); None: relaxation failed or not new
    lab_score: float | None = None  # from measured target properties, overrides the E_hull score
    lab_new: bool = False  # a measurement arrived since the previous feedback


def lab_score(measured: dict[str, float], targets: dict[str, TargetRange], miss_score: float) -> float | None:
    """1 when every measured target property (and ``synthesized``) is met, ``miss_score`` otherwise; None
    when nothing relevant was measured."""
    checks = [t.contains(measured[name], tolerance=0.05) for name, t in targets.items()
              if name in measured and name != "e_above_hull"]
    if "synthesized" in measured:
        checks.append(measured["synthesized"] >= 0.5)
    if not checks:
        return None
    return 1.0 if all(checks) else miss_score


def compute_feedback(round_index: int, outcomes: Sequence[tuple], previous: RoundFeedback | None,
                     proposed_keys: Sequence[str], cfg: FeedbackConfig, stability_threshold: float,
                     lab_used: Sequence[int] = ()) -> RoundFeedback:
    """Feedback after ``round_index``.

    Parameters
    ----------
    outcomes
        :class:`Outcome` tuples (``arm, round, E_hull[, lab_score, lab_new]``) for every candidate of the
        campaign that went to relaxation.
    lab_used
        Ids of the lab measurements behind the outcomes' lab scores.
    """
    scores: dict[str, list[float]] = defaultdict(list)
    hulls: dict[str, list[float]] = defaultdict(list)
    fresh: dict[str, list[float]] = defaultdict(list)
    for o in (Outcome(*x) for x in outcomes):
        arm, ehull = o.arm, o.e_hull
        score = 0.0 if ehull is None else math.exp(-max(ehull, 0.0) / cfg.temperature)
        if o.lab_score is not None:
            score = o.lab_score
        scores[arm].append(score)
        if ehull is not None:
            hulls[arm].append(ehull)
        if o.round_index == round_index or o.lab_new:
            fresh[arm].append(score)
    weights = dict(previous.arm_weights) if previous else {}
    for arm, s in fresh.items() if cfg.enabled else ():  # learning off: every arm keeps its prior weight
        weights[arm] = (1 - cfg.learning_rate) * weights.get(arm, 1.0) + cfg.learning_rate * sum(s) / len(s)
    stats = {arm: ArmStat(n=len(s), mean_score=sum(s) / len(s), best_e_hull=min(hulls[arm], default=None))
             for arm, s in scores.items()}
    all_hulls = [h for hs in hulls.values() for h in hs]
    return RoundFeedback(round_index=round_index, arm_weights=weights, arm_stats=stats,
                         proposed_keys=sorted(proposed_keys), n_evaluated=len(all_hulls),
                         n_stable=sum(h <= stability_threshold for h in all_hulls),
                         best_e_hull=min(all_hulls, default=None), lab_measurements_used=sorted(lab_used))


@task(name="feedback")
def feedback_task(store_url: str, campaign_id: str, round_index: int) -> dict:
    """Compute and store the round's feedback; completes the round."""
    from tasks.relax import relax_context
    from tasks.store import Store

    start = time.time()
    store = Store(store_url)
    cfg, spec, shash = relax_context(store, campaign_id)
    from tasks.store.lab_repo import lab_means

    ehull = {h: v for h, name, v, _, source in store.properties(campaign_id)
             if name == "e_above_hull" and source == "mlip"}
    previous = store.feedback_before(campaign_id, round_index)
    measurements = store.lab_measurements(campaign_id)
    seen = set(previous.lab_measurements_used) if previous else set()
    new_for = {h for mid, h, _, _ in measurements if mid not in seen}
    measured = lab_means(measurements)
    outcomes = []
    for c, _ in store.relaxations(campaign_id, spec.identity, shash):
        lab = measured.get(c.hash, {})
        # a candidate that relaxed into a known phase or an earlier candidate found nothing new: score 0
        e = lab.get("e_above_hull", None if c.relaxed_match else ehull.get(c.hash))
        outcomes.append(Outcome(c.provenance["arm"], c.round_index, e,
                                lab_score(lab, dict(cfg.target.properties), cfg.lab.miss_score), c.hash in new_for))
    fb = compute_feedback(round_index, outcomes, previous, store.proposal_keys(campaign_id), cfg.feedback,
                          cfg.evaluate.stability_threshold, lab_used=[m[0] for m in measurements])
    top = sorted(fb.arm_weights.items(), key=lambda kv: -kv[1])[:5]
    lab_summary = {"measurements": len(measurements), "new": sum(m[0] not in seen for m in measurements),
                   "candidates": len(measured), "values": measured}
    store.advance_round(campaign_id, round_index, "completed", {"top_arms": dict(top), "lab": lab_summary,
                                                                "learning": "on" if cfg.feedback.enabled else "off"},
                        feedback=fb)
    return {"arms": len(fb.arm_weights), "start": start, "end": time.time(), "compute_s": time.time() - start}
