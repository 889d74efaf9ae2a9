"""A real 2-round micro-campaign under Prefect: real generators, real MLIPs (CHGNet and a tiny MACE, the ASE and the
batched TorchSim engines), SQLite."""

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from flows.campaign import run_campaign, start_campaign
from flows.cli import app
from tasks.store import Store, transaction
from tasks.store.tables import CandidateRow, PropertyRow, ProposalRow, RelaxationRow, VerdictRow
from tasks.store.views import candidate_frame
from tests.conftest import micro_config

pytestmark = pytest.mark.slow


def _counts(url):
    with transaction(url) as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t))
                for t in (CandidateRow, ProposalRow, VerdictRow, RelaxationRow, PropertyRow)}


@pytest.fixture(scope="session", params=["chgnet-processes", "mace-threads", "mace-batched-processes"])
def finished_campaign(request, prefect_server, tiny_mace, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "chgnet-processes":
        cfg = micro_config(tmp, **{"runner.kind": "processes", "generator.name": "random",
                                   "relax.max_steps": 150})
    elif request.param == "mace-threads":
        cfg = micro_config(tmp, **{"relax.backend": "mace", "relax.mace_model": str(tiny_mace)})
    else:  # TorchSim relaxes each chunk as one batch in the worker processes
        cfg = micro_config(tmp, **{"runner.kind": "processes", "relax.backend": "mace",
                                   "relax.mace_model": str(tiny_mace), "relax.engine": "batched",
                                   "relax.chunk_size": 16})
    cid = start_campaign(cfg)
    out = run_campaign(cfg.store_url(), cid)
    return cfg, cid, out


def test_campaign_completes_with_every_step_stored(finished_campaign):
    cfg, cid, out = finished_campaign
    store = Store(cfg.store_url())
    campaign = store.campaign(cid)
    assert campaign.status == "completed" and out["campaign_id"] == cid
    assert campaign.mlip.startswith({"chgnet": "chgnet:", "mace": "mace:tiny.model:"}[cfg.relax.backend])
    rounds = store.rounds(cid)
    assert [r.status for r in rounds] == ["completed", "completed"]
    for r in rounds:
        assert r.conditions["round_index"] == r.index and r.feedback["round_index"] == r.index
        assert {"generate", "filter", "relax", "evaluate", "feedback"} <= set(r.summary["timings"])
        assert r.summary["dft"].startswith("skipped")
    df = candidate_frame(cfg.store_url(), cid)
    assert len(df) > 0 and set(df["generator"]) == {cfg.generator.name}
    counts = _counts(cfg.store_url())
    assert counts["verdicts"] == counts["proposals"] == sum(r.summary["generated"] for r in rounds)
    relaxed = df[df["relax_status"].notna()]
    assert len(relaxed) == (df["status"].isin(["relaxed", "relax_failed"])).sum() > 0
    assert set(relaxed["mlip"]) == {campaign.mlip}
    converged = relaxed[relaxed["relax_status"] == "converged"]
    assert len(converged) > 0, relaxed[["formula", "relax_status", "relax_reason"]]
    assert converged["e_above_hull"].notna().all() and (converged["e_above_hull"] >= -1e-9).all()
    assert counts["properties"] == 3 * len(converged)
    rejected = df[df["status"] == "rejected"]
    assert (rejected["rejection"] != "").all()
    assert set(rounds[1].feedback["proposed_keys"]) >= set(rounds[0].feedback["proposed_keys"])
    results = list((store.campaign(cid).campaign_dir and __import__("pathlib").Path(campaign.campaign_dir)
                    / "prefect-results").glob("*"))
    assert results, "Prefect task results are persisted under the campaign directory"


def test_process_workers_report_their_start_and_model_load(finished_campaign):
    """Each pool worker's start (spawn, imports) and model load are told apart: benchmarks/scale.py counts the
    flow's wait for the first as the pool's, not Prefect's."""
    cfg, _, out = finished_campaign
    if cfg.runner.kind != "processes":
        assert out["worker_start"] == []
        return
    assert len(out["worker_start"]) == cfg.runner.max_workers
    loads = sorted(out["intervals"])
    for started, load_began in out["worker_start"]:
        assert 0 < load_began - started < 120  # imports take seconds, not minutes
        assert any(abs(a - load_began) < 1e-6 and b >= a for a, b in loads)  # the load follows at once


def test_rerunning_a_finished_campaign_changes_nothing(finished_campaign):
    cfg, cid, _ = finished_campaign
    before = _counts(cfg.store_url())
    run_campaign(cfg.store_url(), cid)
    assert _counts(cfg.store_url()) == before


def test_cli_reads_the_finished_campaign(finished_campaign, tmp_path):
    cfg, cid, _ = finished_campaign
    runner = CliRunner()
    url = cfg.store_url()
    res = runner.invoke(app, ["status", "--store", url])
    assert res.exit_code == 0 and cid in res.output and "completed" in res.output
    res = runner.invoke(app, ["status", cid, "--store", url])
    assert res.exit_code == 0 and "round" in res.output
    res = runner.invoke(app, ["candidates", cid, "--top", "5", "--include-known", "--store", url])
    assert res.exit_code == 0 and "candidates of campaign" in res.output
    for command in (["candidates", cid], ["export", cid]):  # no silently dropped row
        res = runner.invoke(app, [*command, "--top", "-1", "--store", url])
        assert res.exit_code == 2 and "--top" in res.output and "Traceback" not in res.output
    n = int(candidate_frame(url, cid)["e_above_hull"].notna().sum())
    assert n > 0
    for fmt, pattern in (("cif", "*.cif"), ("extxyz", "*.extxyz"), ("csv", "*.csv")):
        out = tmp_path / fmt
        res = runner.invoke(app, ["export", cid, "--format", fmt, "--out", str(out), "--store", url])
        assert res.exit_code == 0, res.output
        assert len(list(out.glob(pattern))) == (n if fmt == "cif" else 1)
    from ase.io import read

    frames = read(next((tmp_path / "extxyz").glob("*.extxyz")), index=":")
    assert len(frames) == n and all("e_above_hull" in f.info and "hash" in f.info for f in frames)
    rows = candidate_frame(url, cid).set_index("hash")
    for frame in frames:  # every field survives the round trip through ASE's reader, none swallows the next
        row = rows.loc[frame.info["hash"]]
        for key, value in row.items():
            if value is None or value == "" or (isinstance(value, float) and np.isnan(value)):
                assert key not in frame.info
            elif isinstance(value, float):
                assert frame.info[key] == pytest.approx(value), key
            else:
                assert frame.info[key] == value, key
    res = runner.invoke(app, ["export", cid, "--format", "pdb", "--store", url])
    assert res.exit_code == 2 and "allowed: cif, extxyz, csv" in res.output


def test_a_finished_campaign_leaves_a_report_a_person_can_open(finished_campaign, tmp_path):
    import pandas as pd
    from pymatgen.core import Structure

    cfg, cid, _ = finished_campaign
    store = Store(cfg.store_url())
    report = Path(store.campaign(cid).campaign_dir) / "report"
    text = (report / "report.md").read_text()
    assert f"# Campaign {cid}" in text and "## Rounds" in text and "![hull](hull.png)" in text
    table = pd.read_csv(report / "candidates.csv")
    assert len(table) == len(candidate_frame(cfg.store_url(), cid))
    assert {"e_above_hull (eV/atom)", "formation_energy (eV/atom)", "volume (Å^3)", "density (g/cm^3)",
            "spacegroup", "a (Å)", "gamma (°)", "cell"} <= set(table.columns)
    relaxed = table[table["cell"] == "relaxed"]
    assert len(relaxed) > 0 and (relaxed["density (g/cm^3)"] > 0).all() and relaxed["spacegroup"].notna().all()
    for name in ("hull.png", "ehull_round_0.png", "ehull_round_1.png"):
        assert (report / name).read_bytes()[:4] == b"\x89PNG", name
    for cif in (report / "best").glob("*.cif"):  # the best new candidates, relaxed; readable again
        assert Structure.from_file(cif).composition.reduced_formula == cif.name.split("_")[1]
    res = CliRunner().invoke(app, ["report", cid, "--out", str(tmp_path / "r"), "--store", cfg.store_url()])
    assert res.exit_code == 0 and (tmp_path / "r" / "report.md").is_file(), res.output
    res = CliRunner().invoke(app, ["export", cid, "--format", "csv", "--out", str(tmp_path / "csv"),
                                   "--store", cfg.store_url()])
    assert "e_above_hull (eV/atom)" in next((tmp_path / "csv").glob("*.csv")).read_text().splitlines()[0]


def test_progress_bars_end_at_the_final_counts(finished_campaign):
    import io

    from rich.console import Console

    from flows.progress import campaign_progress

    cfg, cid, _ = finished_campaign
    store = Store(cfg.store_url())
    console = Console(file=io.StringIO(), width=200)
    with campaign_progress(store, cid, console, interval=0.05):
        pass
    out = console.file.getvalue()
    known = len(store.known_phase_seeds(cid))
    assert "known phases (hull references) relaxed" in out and f"{known}/{known}" in out
    assert "round 1 completed" in out and "->" not in out.split("round 1 completed")[1].splitlines()[0]


def test_retry_after_a_crash_reuses_persisted_task_results(finished_campaign):
    """As if round 1 died right after relaxing: rerunning skips relaxation work via Prefect's persisted results."""
    from datetime import datetime, timezone

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from prefect.client.schemas.sorting import TaskRunSort

    cfg, cid, _ = finished_campaign
    store = Store(cfg.store_url())
    before = _counts(cfg.store_url())
    store.advance_round(cid, 1, "filtered")
    store.set_campaign(cid, status="failed")
    t0 = datetime.now(timezone.utc)
    run_campaign(cfg.store_url(), cid)
    assert store.campaign(cid).status == "completed" and store.round(cid, 1).status == "completed"
    assert _counts(cfg.store_url()) == before
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="relax-chunk")),
                                     sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=200)
    recent = [r for r in runs if r.created and r.created >= t0]
    assert recent and {r.state.name for r in recent} == {"Cached"}


@pytest.mark.parametrize("name", ["diffusion", "gan"])
def test_micro_campaign_with_a_learned_generator(prefect_server, name, request, tmp_path):
    checkpoint = str(request.getfixturevalue(f"tiny_{name}"))
    options = {"checkpoint": checkpoint, "steps": 40} if name == "diffusion" else {"checkpoint": checkpoint}
    cfg = micro_config(tmp_path, **{"target.chemical_system": "Mg-Si-O", "target.max_atoms": 12,
                                    "generator.name": name, "generator.n_per_round": 4,
                                    f"generator.{name}": options, "relax.max_steps": 40})
    cid = start_campaign(cfg)
    run_campaign(cfg.store_url(), cid)
    store = Store(cfg.store_url())
    assert store.campaign(cid).status == "completed"
    assert [r.status for r in store.rounds(cid)] == ["completed", "completed"]
    df = candidate_frame(cfg.store_url(), cid)
    assert len(df) > 0 and set(df["generator"]) == {name}
    structures = store.candidate_structures(cid, list(df["hash"]))
    assert all({el.symbol for el in s.composition.elements} <= {"Mg", "Si", "O"} for s in structures.values())


def test_round_artifacts_are_in_the_prefect_api(finished_campaign):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.artifacts import artifact_key

    cfg, cid, _ = finished_campaign
    with get_client(sync_client=True) as client:
        def versions(what):
            return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
                any_=[artifact_key(cid, what)])))

        tables, summaries = versions("best-candidates"), versions("round-summary")
        # one version per finished round run under the same key (a round rerun after a crash adds one)
        assert len(tables) == len(summaries) >= cfg.rounds
        assert {a.type for a in tables} == {"table"} and {a.type for a in summaries} == {"markdown"}
        for r in range(cfg.rounds):
            assert any(f"round {r}" in a.data and "data:image/png;base64," in a.data for a in summaries)
        table = max(tables, key=lambda a: a.created).data
        assert "e_above_hull_eV_atom" in table and "formula" in table
        for r in range(cfg.rounds):
            progress = versions(f"round-{r}-progress")
            latest = max(progress, key=lambda a: a.created)  # an interrupted run leaves a version below 100
            assert latest.type == "progress" and float(latest.data) == 100.0


def test_status_and_top_candidates_read_only_what_they_show(finished_campaign):
    """`matloop status` and `matloop candidates` query counts and the top rows instead of the whole campaign:
    the same numbers and rows as the full candidate frame."""
    from pymatgen.core import Composition

    from tasks.store.views import best_candidates, campaign_summary

    cfg, cid, _ = finished_campaign
    url = cfg.store_url()
    df = candidate_frame(url, cid)
    summary = campaign_summary(url, cid, cfg.evaluate.stability_threshold)
    new = df[(df["relaxed_match"].fillna("") == "") & df["formula"].map(lambda f: len(Composition(f)) > 1)]
    best = new["e_above_hull"].min()
    assert summary == {"candidates": len(df), "converged": int((df["relax_status"] == "converged").sum()),
                       "stable_new": int(df["stable_new"].sum()),
                       "best_new_e_above_hull": None if np.isnan(best) else pytest.approx(best)}
    for include_known in (False, True):
        top, total = best_candidates(url, cid, 3, include_known)
        relaxed = df[df["e_above_hull"].notna()]
        if not include_known:
            relaxed = relaxed[relaxed["relaxed_match"].fillna("") == ""]
        assert total == len(df)
        assert list(top["hash"]) == list(relaxed["hash"].head(3))
        assert top.reset_index(drop=True).equals(relaxed.head(3).reset_index(drop=True))
