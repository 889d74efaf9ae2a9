"""The microstructure campaign (``matloop micro run``): rounds of propose -> generate -> check -> evaluate -> update
as Prefect flows, each step a retryable task over tasks/micro/campaign.py.

A round is the table :data:`MICRO_STEPS` (name, the round state the store records when the step is done, the
function, its retries); a resumed round skips the steps its state says are done. After each round the Prefect UI
gets the campaign's evaluations table and the round's markdown summary (artifacts ``matloop-micro-<id>-...``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from conf.micro_campaign import MicroCampaignConfig
from tasks.micro import campaign as steps
from tasks.micro.dataset import MicroDataError
from tasks.store import Store, micro_round_reached


@dataclass(frozen=True)
class MicroStep:
    name: str
    state: str  # the round's state once the step is done (tasks.store.MICRO_ROUND_STATES)
    run: Callable[[Store, str, int], Any]
    retries: int = 0


MICRO_STEPS = (MicroStep("propose", "proposed", steps.propose, retries=1),  # each step may run again safely:
               MicroStep("generate", "generated", steps.generate, retries=1),  # it works on the rows its state
               MicroStep("check", "checked", steps.check, retries=1),  # has not reached
               MicroStep("evaluate", "evaluated", steps.evaluate, retries=1),
               MicroStep("update", "completed", steps.update, retries=1))
STEPS_BY_NAME = {s.name: s for s in MICRO_STEPS}


@task(name="micro-step", task_run_name="{name}-round-{round_index}")
def micro_step_task(name: str, store_url: str, campaign_id: str, round_index: int) -> Any:
    return STEPS_BY_NAME[name].run(Store(store_url), campaign_id, round_index)


@flow(name="matloop-micro-round", flow_run_name="{campaign_id}-round-{round_index}")
def micro_round(store_url: str, campaign_id: str, round_index: int) -> dict:
    """One round: the steps of :data:`MICRO_STEPS` the round has not completed yet."""
    log = get_run_logger()
    store = Store(store_url)
    for step in MICRO_STEPS:
        if micro_round_reached(store.micro_round(campaign_id, round_index).status, step.state):
            continue
        result = micro_step_task.with_options(retries=step.retries, retry_delay_seconds=2)(
            step.name, store_url, campaign_id, round_index)
        log.info("round %d: %s -> %s", round_index, step.name, result)
    publish_micro_round(store, campaign_id, round_index)
    return store.micro_round(campaign_id, round_index).summary


@flow(name="matloop-micro-campaign", flow_run_name="micro-{campaign_id}")
def micro_campaign(store_url: str, campaign_id: str) -> dict:
    """Run (or resume) every round of a microstructure campaign already in the store."""
    store = Store(store_url)
    cfg = steps.campaign_config(store, campaign_id)
    store.set_micro_campaign(campaign_id, "running")
    try:
        for r in range(cfg.rounds):
            if store.micro_round(campaign_id, r).status != "completed":
                micro_round(store_url, campaign_id, r)
    except BaseException:
        store.set_micro_campaign(campaign_id, "failed")
        raise
    store.set_micro_campaign(campaign_id, "completed")
    return {"campaign_id": campaign_id, "rounds": [row.summary for row in store.micro_rounds(campaign_id)]}


def start_micro_campaign(cfg: MicroCampaignConfig, store_url: str | None = None) -> str:
    """Check the generator and the space, then write the campaign (to ``store_url``, default the config's); nothing
    is written if either fails."""
    from tasks.micro.train import load_micro_generator

    if not cfg.generator.is_file():
        raise MicroDataError(f"generator: no checkpoint at {cfg.generator}")
    gen = load_micro_generator(cfg.generator)
    space = steps.space_of(cfg)
    if set(space.columns) != set(gen.columns):
        raise MicroDataError(f"the generator's conditions {gen.columns} differ from its dataset's {space.columns}")
    config = cfg.model_dump(mode="json")
    config["generator"] = str(cfg.generator.resolve())
    return Store(store_url or cfg.url()).create_micro_campaign(config, gen.hash, cfg.output_dir, cfg.rounds)


def evaluation_rows(store: Store, cid: str) -> list[dict]:
    """The campaign's evaluations as flat rows (the UI table and ``matloop micro status``)."""
    rows = []
    for e in store.micro_evaluations(cid):
        valid = e.valid or []
        rows.append({"round": e.round_index, "slot": e.slot, **{k: round(v, 4) for k, v in e.conditions.items()},
                     "source": e.source, "predicted": e.predicted, "p_band": e.value, "status": e.status,
                     "valid": f"{sum(v is True for v in valid)}/{len(valid)}" if valid else "",
                     "mean": e.mean, "std": e.std, "in_band": e.in_band, "error": e.error or ""})
    return rows


def micro_markdown(store: Store, cid: str, r: int) -> str:
    cfg = steps.campaign_config(store, cid)
    s = store.micro_round(cid, r).summary
    best = s.get("best")
    lines = [f"# Microstructure campaign {cid}, round {r}", "",
             f"Target: {cfg.target.property} in [{cfg.target.low}, {cfg.target.high}]; acquisition "
             f"{cfg.acquisition.function}.", "",
             f"- this round: {s.get('evaluated')} conditions evaluated, {s.get('failed')} failed, "
             f"{s.get('in_band')} in the band; valid images {s.get('valid_fraction')}",
             f"- so far: {s.get('in_band_total')} of {s.get('evaluations_total')} conditions in the band; first hit "
             f"at evaluation {s.get('first_hit_evaluation')}"]
    if best:
        lines.append(f"- closest to the band's centre: {best['conditions']} -> {best['mean']:.4g} "
                     f"(round {best['round']})")
    return "\n".join(lines) + "\n"


def publish_micro_round(store: Store, cid: str, r: int) -> None:
    key = f"matloop-micro-{cid.lower()}"
    rows = evaluation_rows(store, cid)
    create_table_artifact(rows or [{"note": "no evaluation yet"}], key=f"{key}-evaluations",
                          description=f"Conditions asked for up to round {r} and their property")
    create_markdown_artifact(micro_markdown(store, cid, r), key=f"{key}-round-summary",
                             description=f"Round {r} summary")
