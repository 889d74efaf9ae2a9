"""Rerunning failed relaxations: the fallback ladder (pure), and a real micro-campaign whose relaxations were
starved of steps, rerun through the CLI with real CHGNet; only failed ones rerun, every attempt is recorded,
and the next evaluation uses the converged reruns."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from conf.schema import RelaxConfig
from tasks.rerun import attempt_hash, fallback_settings


def test_fallback_ladder():
    base = RelaxConfig(max_steps=100, max_step=0.2)
    one = fallback_settings(base, "exploded", 1)
    assert (one.optimizer, one.max_step, one.max_steps) == ("BFGS", pytest.approx(0.1), 200)
    two = fallback_settings(one, "exploded", 2)
    assert two.optimizer == "LBFGS" and two.max_step == pytest.approx(0.025)
    assert fallback_settings(base, "not_converged", 1).optimizer == "LBFGS"
    assert fallback_settings(base, "error", 1).optimizer == "FIRE"
    assert fallback_settings(base, "nan", 1, {"max_steps": 7, "optimizer": "FIRE"}).max_steps == 7  # overrides win
    assert attempt_hash("0123456789ab", 1) == "0123456789-r1" and len(attempt_hash("0123456789ab", 12)) <= 16
    with pytest.raises(ValueError, match="allowed: exploded"):
        fallback_settings(base, "converged", 1)


@pytest.mark.slow
def test_rerun_failed_relaxations_through_the_cli(prefect_server, tmp_path, tiny_mace):
    from flows.campaign import run_campaign, start_campaign
    from flows.cli import app
    from tasks.context import relax_context
    from tasks.stability import evaluate_task
    from tasks.store import Store
    from tests.conftest import micro_config

    cfg = micro_config(tmp_path, **{"rounds": 1, "relax.max_steps": 2})
    cid = start_campaign(cfg)
    run_campaign(cfg.store_url(), cid)
    store = Store(cfg.store_url())
    _, spec, shash = relax_context(store, cid)
    before = store.relaxations(cid, spec.identity, shash)
    refs_failed = {h for h, row in store.reference_energies(spec.identity, shash).items() if row.status != "converged"}
    failed = {c.hash for c, r in before if r.status != "converged"}
    ok = {c.hash for c, r in before if r.status == "converged"}
    assert failed, "max_steps=2 should leave relaxations unconverged"

    # fallback: more steps, and a different MLIP (the tiny MACE) to find the minimum; CHGNet polishes and scores.
    # The tiny MACE sometimes pulls the O2 reference where CHGNet cannot settle (about 1 run in 10): CHGNet then
    # also relaxes from the input geometry, so every failed relaxation converges in one rerun.
    res = CliRunner().invoke(app, ["rerun-failed", cid, "--reason", "not-converged", "--set", "relax.max_steps=600",
                                   "--set", "relax.fmax=0.1", "--set", "relax.backend=mace",
                                   "--set", f"relax.mace_model={tiny_mace}", "--store", cfg.store_url()])
    assert res.exit_code == 0, res.output
    after = {c.hash: r for c, r in store.relaxations(cid, spec.identity, shash)}
    assert all(after[h].attempt == 0 for h in ok)  # converged ones were not touched
    assert all(after[h].attempt == 1 for h in failed)
    assert any(after[h].status == "converged" for h in failed), res.output
    assert all(r.settings_hash.endswith("-r1") for h, r in after.items() if h in failed)
    assert all(after[h].mlip == spec.identity and after[h].worker["pre_relaxed_with"].startswith("mace:")
               and "pre_relax_used" in after[h].worker for h in failed)
    refs = store.reference_energies(spec.identity, shash)
    assert all(refs[h].settings_hash.endswith("-r1") for h in refs_failed)  # failed known phases rerun too
    assert all(refs[h].status == "converged" for h in refs_failed), [(refs[h].formula, refs[h].status, refs[h].reason)
                                                                     for h in refs_failed]
    evaluate_task.fn(cfg.store_url(), cid, 0)  # what the next round's evaluation does
    ehull = {p.hash for p in store.properties(cid) if p.name == "e_above_hull"}
    assert {h for h in failed if after[h].status == "converged"} <= ehull

    res = CliRunner().invoke(app, ["rerun-failed", cid, "--reason", "melted", "--store", cfg.store_url()])
    assert res.exit_code == 2 and "allowed: exploded, not-converged, nan, error" in res.output
    res = CliRunner().invoke(app, ["rerun-failed", cid, "--set", "dft.x=1", "--store", cfg.store_url()])
    assert res.exit_code == 2 and "relax.key=value" in res.output
