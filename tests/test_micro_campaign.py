"""Microstructure campaigns (issue 22): acquisition over process conditions, the judgement of generated images, the
round flow under Prefect with a real generator, taufactor and SQLite, resume after a kill, rerun of failures, and
the CLI's one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from conf.micro_campaign import MicroCampaignConfig
from flows.cli import app
from tasks.micro import campaign as steps
from tasks.micro.acquire import Space, band_probability, campaign_space, choose
from tasks.micro.dataset import MicroDataError
from tasks.micro.judge import condition_value, image_validity
from tasks.store import MICRO_ROUND_STATES, Store


@pytest.fixture(scope="module")
def tiny_gan(tmp_path_factory) -> Path:
    """A 32² conditional GAN trained for two epochs on a small porespy grid (porosity x blobiness)."""
    from conf.micro import MicroTrainConfig
    from tasks.micro.train import train_micro

    tmp = tmp_path_factory.mktemp("micro-gan")
    cfg = MicroTrainConfig.model_validate({
        "data": {"source": {"kind": "porous", "porosity": [0.3, 0.5, 0.7], "blobiness": [0.5, 1.0, 2.0]},
                 "size": 32, "per_condition": 4, "test_conditions": 1, "cache_dir": str(tmp / "data")},
        "model": "gan", "gan": {"generator_width": 16, "critic_width": 8, "z_channels": 4},
        "train": {"epochs": 2, "batch_size": 8, "seed": 0}})
    return train_micro(cfg, tmp / "gan.pt")


def campaign_cfg(tmp_path, generator, **extra) -> MicroCampaignConfig:
    data = {"name": "t", "generator": str(generator), "target": {"property": "volume_fraction", "low": 0.45,
                                                                 "high": 0.55},
            "rounds": 2, "per_round": 3, "images_per_condition": 3, "acquisition": {"initial": 3},
            "output_dir": str(tmp_path / "runs"), **extra}
    return MicroCampaignConfig.model_validate(data)


# ---- pure functions ------------------------------------------------------------------------------------------
def test_band_probability_and_the_choice_of_conditions():
    assert band_probability(np.array([0.5]), np.array([0.0]), 0.4, 0.6)[0] == 1.0
    p = band_probability(np.array([0.5, 0.9]), np.array([0.1, 0.1]), 0.4, 0.6)
    assert p[0] > 0.6 and p[1] < 0.01
    empty = np.zeros((0, 2))
    first = choose(4, "band", empty, np.zeros(0), empty, 0.4, 0.5, initial=4, min_distance=0.05, pool=256, seed=0)
    assert [c.source for c in first] == ["initial"] * 4 and len({tuple(c.unit) for c in first}) == 4
    rng = np.random.default_rng(0)
    x = rng.random((12, 2))
    y = x[:, 0]  # the property grows with the first condition only
    picks = choose(3, "band", x, y, x, 0.4, 0.5, initial=4, min_distance=0.05, pool=512, seed=0)
    assert all(c.source == "band" and 0.3 < c.unit[0] < 0.6 and c.value > 0.3 for c in picks), picks
    units = np.array([c.unit for c in picks])
    assert min(np.linalg.norm(units[i] - units[j]) for i in range(3) for j in range(i + 1, 3)) >= 0.05
    assert [c.source for c in choose(2, "random", x, y, x, 0.4, 0.5, 4, 0.05, 256, 0)] == ["random"] * 2
    crowded = choose(4, "band", x, y, x, 0.4, 0.5, initial=4, min_distance=0.99, pool=64, seed=0)
    assert len({tuple(c.unit) for c in crowded}) == 4  # too crowded to keep the distance: still four different ones
    with pytest.raises(MicroDataError, match="allowed: band, random"):
        choose(1, "ucb", x, y, x, 0.4, 0.5, 4, 0.05, 256, 0)


def test_the_space_is_the_generators_training_box_or_inside_it():
    box = {"porosity": (0.3, 0.7), "blobiness": (0.5, 2.0)}
    space = campaign_space(box, None)
    assert space.as_dicts(space.from_unit(np.array([[0.5, 0.0]]))) == [{"porosity": 0.5, "blobiness": 0.5}]
    assert isinstance(campaign_space(box, {"porosity": (0.4, 0.6), "blobiness": (1.0, 2.0)}), Space)
    with pytest.raises(MicroDataError, match="inside the generator's training range"):
        campaign_space(box, {"porosity": (0.1, 0.6), "blobiness": (1.0, 2.0)})
    with pytest.raises(MicroDataError, match="exactly the generator's conditions"):
        campaign_space(box, {"porosity": (0.4, 0.6)})


def test_validity_and_condition_values():
    assert image_validity(np.zeros((8, 8), bool), (0.02, 0.98)) == "uniform: a single phase"
    img = np.zeros((8, 8), bool)
    img[0, 0] = True
    assert "outside" in image_validity(img, (0.02, 0.98))
    img[:4] = True
    assert image_validity(img, (0.02, 0.98)) is True
    assert condition_value([1.5, float("inf"), None], "tortuosity") == (1.5, 0.0)
    assert condition_value([None], "d_eff") == (None, None)


def test_the_round_steps_and_the_stores_round_states_agree():
    from flows.micro_campaign import MICRO_STEPS

    assert tuple(s.state for s in MICRO_STEPS) == MICRO_ROUND_STATES[1:]


# ---- the flow ------------------------------------------------------------------------------------------------
def test_a_campaign_runs_its_rounds_and_the_surrogate_takes_over(prefect_server, tmp_path, tiny_gan):
    from flows.micro_campaign import micro_campaign, start_micro_campaign

    cfg = campaign_cfg(tmp_path, tiny_gan)
    cid = start_micro_campaign(cfg)
    result = micro_campaign(cfg.url(), cid)
    store = Store(cfg.url())
    rows = store.micro_evaluations(cid)
    assert [(e.round_index, e.slot) for e in rows] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert {e.status for e in rows} == {"evaluated"} and all(Path(e.images_path).is_file() for e in rows)
    assert [e.source for e in rows] == ["initial"] * 3 + ["band"] * 3
    assert all(e.predicted is not None and 0 <= e.value <= 1 for e in rows[3:])
    for e in rows:  # the stored mean is the mean over the stored images' valid ones
        images = steps.load_images(e.images_path)
        assert e.mean == pytest.approx(np.mean([i.mean() for i, ok in zip(images, e.valid) if ok is True]))
        assert e.in_band == (0.45 <= e.mean <= 0.55)
    assert store.micro_campaign(cid).status == "completed"
    assert result["rounds"][-1]["evaluations_total"] == 6 and "best" in result["rounds"][-1]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        def versions(what):
            return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
                any_=[f"matloop-micro-{cid}-{what}"])))

        tables, summaries = versions("evaluations"), versions("round-summary")
    assert len(tables) == len(summaries) == 2  # one version per round
    assert any("round 1" in a.data and "volume_fraction in [0.45, 0.55]" in a.data for a in summaries)
    assert "porosity" in max(tables, key=lambda a: a.created).data


def test_a_killed_round_resumes_where_it_stopped_and_failures_are_rerun(prefect_server, tmp_path, tiny_gan,
                                                                        monkeypatch):
    from flows.micro_campaign import micro_campaign, start_micro_campaign

    cfg = campaign_cfg(tmp_path, tiny_gan, target={"property": "d_eff", "low": 0.1, "high": 0.3}, rounds=1,
                       per_round=2, images_per_condition=2)
    cid = start_micro_campaign(cfg)
    store = Store(cfg.url())
    steps.propose(store, cid, 0)
    steps.generate(store, cid, 0)  # killed here: images on disk, round state "generated"
    before = [(e.conditions, e.images_path) for e in store.micro_evaluations(cid)]
    real_property = steps.image_property
    calls = []

    def flaky(image, name):  # the first condition's property computation breaks once
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("solver diverged")
        return real_property(image, name)

    monkeypatch.setattr(steps, "image_property", flaky)
    micro_campaign(cfg.url(), cid)
    rows = store.micro_evaluations(cid)
    assert [(e.conditions, e.images_path) for e in rows] == before  # resumed: nothing proposed or drawn again
    assert [e.status for e in rows] == ["failed", "evaluated"] and "solver diverged" in rows[0].error
    assert store.micro_round(cid, 0).summary["failed"] == 1
    monkeypatch.setattr(steps, "image_property", real_property)
    result = CliRunner().invoke(app, ["micro", "rerun-failed", cid, "--store", cfg.url()])
    assert result.exit_code == 0 and "1 failed condition(s) evaluated again, 0 still failing" in result.output
    first = store.micro_evaluations(cid)[0]
    assert first.status == "evaluated" and first.attempts == 2 and first.error is None
    assert all(v is None or 0 <= v <= 1 for v in first.values)  # taufactor's D_eff/D_0
    assert store.micro_round(cid, 0).summary["failed"] == 0
    status = CliRunner().invoke(app, ["micro", "status", cid, "--store", cfg.url()], env={"COLUMNS": "250"})
    assert status.exit_code == 0 and "evaluated" in status.output and "porosity" in status.output


# ---- the command ---------------------------------------------------------------------------------------------
def write_config(tmp_path, generator, extra: dict | None = None) -> Path:
    data = {"name": "cli", "generator": str(generator), "target": {"property": "volume_fraction", "low": 0.4,
                                                                   "high": 0.6},
            "rounds": 1, "per_round": 2, "images_per_condition": 2, "output_dir": str(tmp_path / "runs"),
            **(extra or {})}
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_matloop_micro_run_from_a_yaml(prefect_server, tmp_path, tiny_gan):
    result = CliRunner().invoke(app, ["micro", "run", "-c", str(write_config(tmp_path, tiny_gan))],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "microstructure campaign" in result.output and "of 2 conditions in the target band" in result.output


@pytest.mark.parametrize("extra, message", [
    ({"generator": "nowhere.pt"}, "generator: no checkpoint at nowhere.pt"),
    ({"space": {"porosity": [0.1, 0.6], "blobiness": [0.5, 2.0]}}, "inside the generator's training range"),
    ({"target": {"property": "d_eff", "low": 0.5, "high": 0.2}}, "must be below target.high"),
    ({"acquisition": {"function": "ucb"}}, "acquisition.function"),
    ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
    ({"validity": {"volume_fraction": [0.9, 0.1]}}, "validity.volume_fraction must be [low, high]"),
])
def test_matloop_micro_run_refuses_bad_campaigns_and_writes_nothing(tmp_path, tiny_gan, extra, message):
    result = CliRunner().invoke(app, ["micro", "run", "-c", str(write_config(tmp_path, tiny_gan, extra))],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "runs").exists()


def test_a_micro_campaign_on_postgres_keeps_its_password_out_of_output_store_and_flow_runs(prefect_server, tmp_path,
                                                                                        tiny_gan):
    """A real PostgreSQL store (.ci/postgres.sh): the campaign runs there, and its URL's password is in no output,
    no stored config and no Prefect flow run parameter."""
    import json

    from prefect.client.orchestration import get_client
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    from tasks.store import transaction
    from tasks.store.micro_tables import MicroCampaignRow
    from tests.conftest import fresh_postgres_url

    url = fresh_postgres_url()
    password = make_url(url).password
    result = CliRunner().invoke(app, ["micro", "run", "-c", str(write_config(tmp_path, tiny_gan, {"store_url": url}))],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert password not in result.output and "matloop@127.0.0.1" in result.output
    with transaction(url) as s:
        rows = list(s.scalars(select(MicroCampaignRow)))
        configs, ids = [r.config for r in rows], [r.id for r in rows]
    assert len(ids) == 1 and password not in json.dumps(configs)
    assert len(Store(url).micro_evaluations(ids[0])) == 2
    with get_client(sync_client=True) as client:
        params = json.dumps([r.parameters for r in client.read_flow_runs()], default=str)
    assert ids[0] in params and password not in params
    status = CliRunner().invoke(app, ["micro", "status", ids[0], "--store", url], env={"COLUMNS": "250"})
    assert status.exit_code == 0 and password not in status.output and "evaluated" in status.output


def test_resume_refuses_a_new_config_and_a_replaced_generator(prefect_server, tmp_path, tiny_gan):
    import shutil

    gen = tmp_path / "gen.pt"
    shutil.copy(tiny_gan, gen)
    cfg = campaign_cfg(tmp_path, gen, rounds=1, per_round=1, images_per_condition=1)
    from flows.micro_campaign import start_micro_campaign

    cid = start_micro_campaign(cfg)
    args = ["micro", "run", "--resume", cid, "--store", cfg.url()]
    again = CliRunner().invoke(app, [*args, "-c", "x.yaml"], env={"COLUMNS": "300"})
    assert again.exit_code == 2 and "drop --config/--set" in again.output
    gen.unlink()
    moved = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert moved.exit_code == 2 and "Traceback" not in moved.output and "gen.pt" in moved.output
    assert Store(cfg.url()).micro_round(cid, 0).status == "pending"  # nothing ran


def test_an_infinite_tortuosity_is_stored_as_unknown(tmp_path, tiny_gan, monkeypatch):
    import json

    cfg = campaign_cfg(tmp_path, tiny_gan, target={"property": "tortuosity", "low": 1.0, "high": 2.0}, rounds=1,
                       per_round=1, images_per_condition=2, validity={"volume_fraction": [0.0, 1.0]})
    from flows.micro_campaign import start_micro_campaign

    cid = start_micro_campaign(cfg)
    store = Store(cfg.url())
    for step in (steps.propose, steps.generate, steps.check):
        step(store, cid, 0)
    taus = iter([float("inf"), 1.5])  # the first image does not percolate
    monkeypatch.setattr(steps, "image_property", lambda image, name: next(taus))
    steps.evaluate(store, cid, 0)
    row = store.micro_evaluations(cid)[0]
    assert row.values == [None, 1.5] and row.mean == 1.5 and row.in_band
    json.dumps(row.values, allow_nan=False)  # what PostgreSQL's JSON accepts
