"""Feedback: weight generator arms by how close their candidates landed to the hull.

Each observation of an arm scores ``exp(-max(E_hull, 0) / T)`` (1 on the hull, towards 0 far above it). A
candidate the filter rejected, one whose relaxation failed (non-finite, exploded, error), or one that relaxed
into a known phase or an earlier candidate found nothing new: score 0. A relaxation that ran out of steps says
nothing about the energy it would have reached: it is not scored.

An arm's weight is the shrinkage estimate ``(k * m + sum of its scores) / (k + its observations)`` over every
observation of the campaign so far, with ``m`` the campaign's mean score (the weight of untried arms) and ``k``
``feedback.prior_strength``; no weight falls below ``feedback.min_weight``. An arm that does better than the
campaign's average rises above the arms not yet tried, a worse one falls below them, and the estimate is the same
whichever round computes it (a resumed round gets the same weights).

Lab measurements take precedence over computed values: a measured E_hull replaces the MLIP one; a measured
target property (or ``synthesized``) makes the score 1 when it meets the target and ``lab.miss_score``
when it does not.

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
from tasks.results import ArmStat, RoundFeedback, TaskRecord


class Outcome(NamedTuple):
    arm: str
    round_index: int  # round the candidate was proposed in
    e_hull: float | None  # eV/atom (measured if measured); None: nothing new (rejected, failed, known phase)
    lab_score: float | None = None  # from measured target properties, overrides the E_hull score
    scored: bool = True  # False: the relaxation ran out of steps (no energy to judge) and nothing was measured


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


def compute_feedback(round_index: int, outcomes: Sequence[Outcome], proposed_keys: Sequence[str],
                     cfg: FeedbackConfig, stability_threshold: float, lab_used: Sequence[int] = ()) -> RoundFeedback:
    """Feedback after ``round_index`` from the :class:`Outcome` of every candidate of the campaign so far;
    ``lab_used``: ids of the lab measurements behind the lab scores."""
    scores: dict[str, list[float]] = defaultdict(list)
    hulls: dict[str, list[float]] = defaultdict(list)
    tried: set[str] = set()
    for o in outcomes:
        tried.add(o.arm)
        if o.e_hull is not None:
            hulls[o.arm].append(o.e_hull)
        if o.lab_score is not None:
            scores[o.arm].append(o.lab_score)
        elif o.scored:
            scores[o.arm].append(0.0 if o.e_hull is None else math.exp(-max(o.e_hull, 0.0) / cfg.temperature))
    every = [x for s in scores.values() for x in s]
    prior = max(math.fsum(every) / len(every), cfg.min_weight) if every else 1.0
    weights, k = {}, cfg.prior_strength
    if cfg.enabled:  # learning off: every arm keeps the prior weight 1
        weights = {arm: max((k * prior + math.fsum(s)) / (k + len(s)), cfg.min_weight) for arm, s in scores.items()}
    stats = {arm: ArmStat(n=len(scores.get(arm, [])), mean_score=_mean(scores.get(arm, [])),
                          best_e_hull=min(hulls[arm], default=None)) for arm in sorted(tried)}
    all_hulls = [h for hs in hulls.values() for h in hs]
    return RoundFeedback(round_index=round_index, arm_weights=weights, prior_weight=prior if cfg.enabled else 1.0,
                         arm_stats=stats, proposed_keys=sorted(proposed_keys), n_evaluated=len(all_hulls),
                         n_stable=sum(h <= stability_threshold for h in all_hulls),
                         best_e_hull=min(all_hulls, default=None), lab_measurements_used=sorted(lab_used))


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


@task(name="feedback")
def feedback_task(store_url: str, campaign_id: str, round_index: int) -> TaskRecord:
    """Compute and store the round's feedback; completes the round."""
    from tasks.context import relax_context
    from tasks.store import Store

    start = time.time()
    store = Store(store_url)
    cfg, spec, shash = relax_context(store, campaign_id)
    from tasks.store.lab_repo import lab_means

    ehull = {p.hash: p.value for p in store.properties(campaign_id)
             if p.name == "e_above_hull" and p.source == "mlip"}
    previous = store.feedback_before(campaign_id, round_index)
    measurements = store.lab_measurements(campaign_id)
    seen = set(previous.lab_measurements_used) if previous else set()
    measured = lab_means(measurements)
    targets = dict(cfg.target.properties)
    outcomes = [Outcome(arm, r, None) for arm, r in store.rejected_arms(campaign_id)]
    for c, rel in store.relaxations(campaign_id, spec.identity, shash):
        lab = measured.get(c.hash, {})
        # a candidate that relaxed into a known phase or an earlier candidate found nothing new: score 0
        e = lab.get("e_above_hull", None if c.relaxed_match else ehull.get(c.hash))
        outcomes.append(Outcome(c.provenance["arm"], c.round_index, e, lab_score(lab, targets, cfg.lab.miss_score),
                                scored=rel.status != "not_converged" or bool(lab)))
    fb = compute_feedback(round_index, outcomes, store.proposal_keys(campaign_id), cfg.feedback,
                          cfg.evaluate.stability_threshold, lab_used=[m[0] for m in measurements])
    top = sorted(fb.arm_weights.items(), key=lambda kv: -kv[1])[:5]
    lab_summary = {"measurements": len(measurements), "new": sum(m[0] not in seen for m in measurements),
                   "candidates": len(measured), "values": measured}
    store.advance_round(campaign_id, round_index, "completed", {"top_arms": dict(top), "lab": lab_summary,
                                                                "learning": "on" if cfg.feedback.enabled else "off"},
                        feedback=fb)
    return TaskRecord.since(start)
