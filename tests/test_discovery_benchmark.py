"""The discovery benchmark's quick tier for real: Prefect, SQLite, CHGNet, shared store, resume (skips cleanly
without ../shared/data)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.store import Store
from tasks.store.views import candidate_frame
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow


def _counts(url: str) -> dict:
    from sqlalchemy import func, select

    from tasks.store import transaction
    from tasks.store.tables import CampaignRow, RelaxationRow

    with transaction(url) as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in (CampaignRow, RelaxationRow)}


@pytest.fixture(scope="session")
def quick(prefect_server, tmp_path_factory):
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    from benchmarks.discovery import main

    tmp = tmp_path_factory.mktemp("discovery")
    args = ["--tier", "quick", "--per-round", "3", "--workdir", str(tmp / "work"), "--out", str(tmp / "quick.json")]
    result = main(args)
    return tmp, args, result, f"sqlite:///{(tmp / 'work' / 'discovery.db').resolve()}"


def test_quick_tier_writes_curves_for_every_arm(quick):
    tmp, _, result, _ = quick
    assert result["budget"] == 6 and [h["id"] for h in result["heldout"]] == ["mp-5777"]  # BaTiO3 held out
    arms = result["arms"]
    assert {(a["generator"], a["learning"]) for a in arms} == {(g, lrn) for g in ("substitution", "random")
                                                               for lrn in ("on", "off")}
    for a in arms:
        assert not a["error"] and a["status"] == "completed" and a["mlip"].startswith("chgnet:")
        assert 0 < a["spent"] <= 6 and len(a["curve_hits"]) == 6 and a["rounds_run"] <= 6
        assert a["hits"] == a["rediscovery"] + a["sun"] == a["curve_hits"][-1]
    saved = json.loads((tmp / "quick.json").read_text())
    assert saved["summary"] and saved["enhancement"] and len(saved["arms"]) == 4
    assert (tmp / "quick.png").read_bytes()[:4] == b"\x89PNG"
    relaxations = pd.read_csv(tmp / "quick-relaxations.csv.gz")
    assert len(relaxations) == sum(a["spent"] for a in arms)
    hits = relaxations[relaxations["kind"].isin(["rediscovery", "sun"])]
    assert hits["cif"].str.startswith("# generated using pymatgen").all()  # the samples behind the numbers


def test_every_arm_spends_the_same_budget_and_identical_work_is_relaxed_once(quick):
    _, _, result, url = quick
    store = Store(url)
    by_arm = {(a["generator"], a["learning"]): a for a in result["arms"]}
    for a in by_arm.values():
        assert store.relaxation_count(a["campaign"]) == a["spent"]
    sub = by_arm[("substitution", "on")]
    assert sub["spent"] == 6, "substitution in Ba-Ti-O has proposals enough for the budget"
    off = by_arm[("substitution", "off")]["campaign"]
    from tasks.context import relax_context

    _, spec, shash = relax_context(store, off)
    reused = [r for c, r in store.relaxations(off, spec.identity, shash) if c.round_index == 0]
    assert reused and all(r.worker.get("reused_from_campaign") == sub["campaign"] for r in reused)


def test_learning_off_makes_no_update_and_is_recorded(quick):
    _, _, result, url = quick
    store = Store(url)
    for a in result["arms"]:
        rounds = [r for r in store.rounds(a["campaign"]) if r.status == "completed"]
        assert rounds and all(r.summary["learning"] == a["learning"] for r in rounds)
        weights = [r.feedback["arm_weights"] for r in rounds]
        if a["learning"] == "off":
            assert all(w == {} for w in weights)
        else:
            assert any(w for w in weights)
        assert store.config(a["campaign"]).evaluate.reference_hull.name == "campaign_hull.csv.gz"


def test_status_and_candidates_count_hits_alike(quick):
    _, _, result, url = quick
    runner = CliRunner()
    res = runner.invoke(app, ["status", "--store", url])
    assert res.exit_code == 0 and "stable new" in res.output
    for a in result["arms"]:
        df = candidate_frame(url, a["campaign"])
        n = int(df["stable_new"].sum())
        line = next(ln for ln in res.output.splitlines() if a["campaign"] in ln)
        assert line.split("│")[7].strip() == str(n)
        shown = runner.invoke(app, ["candidates", a["campaign"], "--top", "100", "--store", url]).output
        assert shown.count(" yes ") == n
        assert not (df["stable_new"] & (df["relaxed_match"].fillna("") != "")).any()


def test_a_rerun_continues_and_redoes_nothing(quick):
    from benchmarks.discovery import main

    _, args, result, url = quick
    store = Store(url)
    last = result["arms"][-1]["campaign"]  # as if the benchmark was killed inside its last campaign
    completed = [r.index for r in store.rounds(last) if r.status == "completed"]
    store.advance_round(last, completed[-1], "filtered")
    store.set_campaign(last, status="failed")
    before = _counts(url)
    again = main(args)
    assert _counts(url) == before and store.campaign(last).status == "completed"
    assert [a["curve_hits"] for a in again["arms"]] == [a["curve_hits"] for a in result["arms"]]


def test_a_work_folder_refuses_other_inputs_before_writing(quick):
    from benchmarks.discovery import main

    tmp, args, _, _ = quick
    work = tmp / "work"
    before = {p.name: p.read_bytes() for p in work.iterdir() if p.suffix in (".csv", ".gz")}
    with pytest.raises(SystemExit, match="heldout.csv differ from what the campaigns"):
        main([*args, "--systems", "Li-In-O"])
    assert {p.name: p.read_bytes() for p in work.iterdir() if p.suffix in (".csv", ".gz")} == before


def test_the_shipped_checkpoints_can_serve_the_benchmark():
    """`--checkpoint gan=builtin`: the shipped weights were trained without the held-out phases (their exclude_ids
    say so), and a checkpoint that saw a held-out phase is refused."""
    from types import SimpleNamespace

    from benchmarks.discovery import check_checkpoint, parse_args

    heldout = SimpleNamespace(heldout=pd.DataFrame({"id": ["mp-5777", "mp-5488", "mp-4482", "mp-754363", "mp-3953"]}))
    for gen, ref in (("diffusion", "builtin"), ("diffusion", "builtin:eform"), ("gan", "builtin")):
        assert check_checkpoint(gen, ref, heldout).is_file()
    with pytest.raises(SystemExit, match=r"without excluding held-out phase\(s\) \['mp-1'\]"):
        check_checkpoint("gan", "builtin", SimpleNamespace(heldout=pd.DataFrame({"id": ["mp-1"]})))
    assert parse_args(["--checkpoint", "gan=builtin"]).checkpoints["gan"] == "builtin"
    with pytest.raises(SystemExit):
        parse_args(["--checkpoint", "vae=builtin"])
