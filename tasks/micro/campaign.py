"""The steps of a microstructure campaign round, as store-backed functions that know nothing of Prefect
(flows/micro_campaign.py runs them as retryable tasks).

propose -> generate -> check -> evaluate -> update: each reads what the round's earlier steps stored and writes its
results together with the round's new state (tasks/store/micro_repo.py). Images are .npz files under the campaign
folder (``images/round-<r>/slot-<k>.npz``, written atomically); the store keeps their path. ``evaluate`` writes
each condition as it finishes, so a killed round resumes with the conditions left; a condition whose property
computation fails is stored ``failed`` with its error, and ``matloop micro rerun-failed`` computes it again.
"""

from __future__ import annotations

import math
import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from conf.micro_campaign import MicroCampaignConfig
from tasks.micro.acquire import Space, campaign_space, choose
from tasks.micro.dataset import MicroDataError
from tasks.micro.judge import condition_value, image_property, image_validity, in_band
from tasks.store import Store


def campaign_config(store: Store, cid: str) -> MicroCampaignConfig:
    return MicroCampaignConfig.model_validate(store.micro_campaign(cid).config)


@lru_cache(maxsize=4)
def _generator(path: str, expected_hash: str | None):
    from tasks.micro.train import load_micro_generator

    gen = load_micro_generator(Path(path))
    if expected_hash is not None and gen.hash != expected_hash:
        raise MicroDataError(f"the generator at {path} (hash {gen.hash[:12]}) is not the one this campaign started "
                             f"with ({expected_hash[:12]}): restore it or start a new campaign")
    return gen


def generator_of(cfg: MicroCampaignConfig, expected_hash: str | None = None):
    return _generator(str(Path(cfg.generator).resolve()), expected_hash)


def training_box(checkpoint: Path) -> dict[str, tuple[float, float]]:
    """Each condition's range in the generator's training data."""
    from conf.micro import MicroDataConfig
    from models.checkpoint import load_checkpoint
    from tasks.micro.dataset import load_dataset

    data_cfg = MicroDataConfig.model_validate(load_checkpoint(checkpoint)["data_config"])
    if data_cfg.source.kind != "folder":
        return {k: (float(min(v)), float(max(v))) for k, v in data_cfg.source.grid().items()}
    data = load_dataset(data_cfg)
    return {c: (float(data.table[c].min()), float(data.table[c].max())) for c in data.condition_columns}


def space_of(cfg: MicroCampaignConfig) -> Space:
    return campaign_space(training_box(Path(cfg.generator)), cfg.space)


def propose(store: Store, cid: str, r: int) -> int:
    if store.micro_evaluations(cid, r):  # a retry after the proposal was stored: it stands
        store.write_micro_step(cid, r, "proposed")
        return len(store.micro_evaluations(cid, r))
    cfg = campaign_config(store, cid)
    space = space_of(cfg)
    earlier = [e for e in store.micro_evaluations(cid) if e.round_index < r]
    done = [e for e in earlier if e.status == "evaluated" and e.mean is not None]
    asked = space.to_unit(space.as_array([e.conditions for e in earlier]))
    a = cfg.acquisition
    choices = choose(cfg.per_round, a.function, space.to_unit(space.as_array([e.conditions for e in done])),
                     np.array([e.mean for e in done]), asked, cfg.target.low, cfg.target.high, a.initial,
                     a.min_distance, a.pool, seed=cfg.seed * 7919 + r)
    new = [{"slot": k, "conditions": space.as_dicts(space.from_unit(c.unit))[0], "source": c.source,
            "predicted": c.predicted, "sigma": c.sigma, "value": c.value, "status": "proposed"}
           for k, c in enumerate(choices)]
    store.write_micro_step(cid, r, "proposed", new=new)
    return len(new)


def _save(path: Path, images: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, images=images)
    os.replace(tmp, path)


def load_images(path: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        return data["images"].astype(bool)


def generate(store: Store, cid: str, r: int) -> int:
    campaign = store.micro_campaign(cid)
    cfg = MicroCampaignConfig.model_validate(campaign.config)
    gen = generator_of(cfg, campaign.generator_hash)
    rows = []
    for e in store.micro_evaluations(cid, r, status="proposed"):
        images = gen.sample(e.conditions, cfg.images_per_condition, seed=cfg.seed * 100_003 + r * 1000 + e.slot,
                            steps=cfg.steps, guidance=cfg.guidance)
        path = Path(campaign.campaign_dir) / "images" / f"round-{r}" / f"slot-{e.slot}.npz"
        _save(path, images)
        rows.append({"slot": e.slot, "images_path": str(path), "status": "generated"})
    store.write_micro_step(cid, r, "generated", rows=rows)
    return len(rows)


def check(store: Store, cid: str, r: int) -> int:
    cfg = campaign_config(store, cid)
    rows = []
    for e in store.micro_evaluations(cid, r, status="generated"):
        images = load_images(e.images_path)
        rows.append({"slot": e.slot, "status": "checked",
                     "valid": [image_validity(i, cfg.validity.volume_fraction) for i in images],
                     "volume_fractions": [float(i.mean()) for i in images]})
    store.write_micro_step(cid, r, "checked", rows=rows)
    return len(rows)


def evaluate_one(store: Store, cid: str, cfg: MicroCampaignConfig, e) -> bool:
    """The property of one checked (or failed) condition's valid images; stored ``evaluated`` or ``failed``."""
    try:
        images = load_images(e.images_path)
        values = [image_property(img, cfg.target.property) if ok is True else None
                  for img, ok in zip(images, e.valid)]
    except Exception as exc:  # noqa: BLE001 - stored with the condition, shown by status, retried by rerun-failed
        store.update_micro_evaluation(cid, e.round_index, e.slot, status="failed", attempts=e.attempts + 1,
                                      error=f"{type(exc).__name__}: {exc}"[:2000])
        return False
    mean, std = condition_value(values, cfg.target.property)
    store.update_micro_evaluation(cid, e.round_index, e.slot, status="evaluated", attempts=e.attempts + 1,
                                  # JSON has no inf (PostgreSQL refuses it): a non-percolating image's infinite
                                  # tortuosity is stored as None, as the mean already leaves it out
                                  values=[None if v is None or not math.isfinite(v) else float(v) for v in values],
                                  mean=mean, std=std,
                                  in_band=in_band(mean, cfg.target.low, cfg.target.high), error=None)
    return True


def evaluate(store: Store, cid: str, r: int) -> int:
    cfg = campaign_config(store, cid)
    todo = store.micro_evaluations(cid, r, status="checked")
    ok = sum(evaluate_one(store, cid, cfg, e) for e in todo)
    store.write_micro_step(cid, r, "evaluated")
    return ok


def round_summary(store: Store, cid: str, r: int) -> dict:
    """What the round found and where the campaign stands after it."""
    cfg = campaign_config(store, cid)
    rows = store.micro_evaluations(cid)
    upto = [e for e in rows if e.round_index <= r]
    this = [e for e in upto if e.round_index == r]
    centre = (cfg.target.low + cfg.target.high) / 2
    scored = [e for e in upto if e.mean is not None]
    best = min(scored, key=lambda e: abs(e.mean - centre)) if scored else None
    first_hit = next((i + 1 for i, e in enumerate(e for e in upto if e.status in ("evaluated", "failed"))
                      if e.in_band), None)
    return {"evaluated": sum(e.status == "evaluated" for e in this), "failed": sum(e.status == "failed" for e in this),
            "in_band": sum(bool(e.in_band) for e in this), "in_band_total": sum(bool(e.in_band) for e in upto),
            "evaluations_total": len(upto), "first_hit_evaluation": first_hit,
            "valid_fraction": float(np.mean([v is True for e in this for v in (e.valid or [])])) if this else None,
            "best": None if best is None else {"round": best.round_index, "slot": best.slot,
                                               "conditions": best.conditions, "mean": best.mean},
            "finished_at": time.time()}


def update(store: Store, cid: str, r: int) -> dict:
    summary = round_summary(store, cid, r)
    store.write_micro_step(cid, r, "completed", summary=summary)
    return summary


def rerun_failed(store: Store, cid: str) -> tuple[int, int]:
    """Compute the failed conditions' properties again: (now evaluated, still failed); round summaries refreshed."""
    cfg = campaign_config(store, cid)
    failed = store.micro_evaluations(cid, status="failed")
    ok = sum(evaluate_one(store, cid, cfg, e) for e in failed)
    for r in sorted({e.round_index for e in failed}):
        if store.micro_round(cid, r).status == "completed":
            store.write_micro_step(cid, r, "completed", summary=round_summary(store, cid, r))
    return ok, len(failed) - ok
