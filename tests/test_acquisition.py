"""Acquisition under uncertainty: the functions on toy pools, the ensemble surrogate, and a real campaign (Prefect,
SQLite, CHGNet) that relaxes only what its acquisition chose and records every choice."""

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from conf.loop import AcquisitionConfig
from tasks.acquire import campaign_hull, rank_candidates
from tasks.acquisition.functions import acquisition_values, select
from tasks.acquisition.surrogate import EnsembleSurrogate
from tasks.errors import EvaluationError


def test_lcb_prefers_the_uncertain_candidate_at_equal_mean():
    mu, sigma = np.array([0.1, 0.1]), np.array([0.01, 0.2])
    assert np.argmax(acquisition_values(mu, sigma, "lcb", kappa=1.0)) == 1
    assert acquisition_values(mu, sigma, "greedy")[0] == acquisition_values(mu, sigma, "greedy")[1]


def test_ei_reduces_to_greedy_as_sigma_vanishes():
    mu = np.array([0.3, -0.05, 0.02, 0.5, 0.12])
    for sigma in (1e-6, 0.0):
        ei = acquisition_values(mu, np.full(5, sigma), "ei", target=0.1)
        assert list(np.argsort(-ei)) == list(np.argsort(mu))
    wide = acquisition_values(np.array([0.2, 0.2]), np.array([0.01, 0.3]), "ei", target=0.1)
    assert wide[1] > 0.01 > wide[0]  # above the target only uncertainty gives a chance of improvement


def test_random_is_seeded_and_unknown_functions_are_named():
    mu = np.zeros(6)
    draw = acquisition_values(mu, mu, "random", seed=4)
    assert np.array_equal(draw, acquisition_values(mu, mu, "random", seed=4))
    assert not np.array_equal(draw, acquisition_values(mu, mu, "random", seed=5))
    with pytest.raises(ValueError, match="greedy, lcb, ei, random"):
        acquisition_values(mu, mu, "thompson")


def test_diversity_keeps_one_composition_from_taking_the_budget():
    values, formulas = np.array([1.0, 0.99, 0.98, 0.5]), ["A", "A", "A", "B"]
    assert select(values, formulas, 2) == [0, 1]
    assert select(values, formulas, 2, diversity=0.6) == [0, 3]
    assert select(values, formulas, 10) == [0, 1, 2, 3] and select(values, formulas, 0) == []
    # the campaign already relaxed A twice in earlier rounds: B goes first, A only when nothing else is left
    assert select(values, formulas, 2, earlier={"A": 2}, repeat_penalty=0.3) == [3, 0]
    assert select(values, formulas, 2, earlier={"A": 2}, repeat_penalty=0.0) == [0, 1]


def test_earlier_relaxations_of_a_composition_cost_the_acquisition_but_not_random_choice():
    from conf.loop import AcquisitionConfig
    from tasks.acquire import rank_candidates

    cells = [("a", _rocksalt(4.2)), ("b", _rocksalt(4.2, ("Ca", "O")))]
    screened = np.array([0.0, 0.02])  # MgO screens better
    for function in ("greedy", "random"):
        cfg = AcquisitionConfig(function=function, relax_per_round=1, repeat_penalty=0.05)
        plain = [r["hash"] for r in rank_candidates(cells, [], lambda c, e: e, cfg, 0.1, 0, screened) if r["chosen"]]
        again = [r["hash"] for r in rank_candidates(cells, [], lambda c, e: e, cfg, 0.1, 0, screened,
                                                    earlier={"MgO": 1}) if r["chosen"]]
        assert (plain, again) == ((["a"], ["b"]) if function == "greedy" else (plain, plain))


def _rocksalt(a: float, species=("Mg", "O")) -> Structure:
    return Structure(Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_the_surrogate_learns_the_campaigns_energies_and_knows_where_it_has_no_data():
    train = [_rocksalt(a) for a in (2.0, 2.1, 2.2)] + [_rocksalt(a, ("Ca", "O")) for a in (2.4, 2.5)]
    y = [-3.0, -3.0, -2.95, -3.3, -3.3]
    model = EnsembleSurrogate(trees=32, seed=0).fit(train, y)
    mu, sigma = model.predict(train)
    assert np.abs(mu - y).max() < 0.1
    _, far = model.predict([Structure(Lattice.cubic(3.0), ["Ba", "Ti", "O"], [[0, 0, 0], [.5, .5, .5], [.5, .5, 0]])])
    assert far[0] >= sigma.mean()  # unlike anything it was trained on: at least as uncertain


def test_rank_candidates_chooses_by_predicted_e_hull_and_records_every_candidate():
    hull = campaign_hull([("MgO", -3.0)], [], ["Mg", "O"])
    train = [(_rocksalt(2.1), -3.0), (_rocksalt(2.1, ("Mg", "Mg")), 0.0), (_rocksalt(2.1, ("O", "O")), 0.0)]
    cands = [("mgo", _rocksalt(2.12)), ("mg", _rocksalt(2.5, ("Mg", "Mg"))),
             ("mgo2", Structure(Lattice.cubic(3.0), ["Mg", "O", "O"], [[0, 0, 0], [.5, .5, .5], [.5, 0, 0]]))]
    cfg = AcquisitionConfig(function="greedy", relax_per_round=1, surrogate="formation_energy")
    rows = rank_candidates(cands, train, hull.e_above_hull, cfg, target=0.1, seed=0)
    assert [r["hash"] for r in rows] == ["mgo", "mg", "mgo2"] and sum(r["chosen"] for r in rows) == 1
    best = min(rows, key=lambda r: r["predicted_e_above_hull"])
    assert best["chosen"] and best["rank"] == 0 and all(r["sigma"] >= 0 for r in rows)
    assert hull.e_above_hull(Composition("MgO"), -3.0) == pytest.approx(0.0)


def test_failed_relaxations_teach_the_surrogate_what_to_avoid():
    hull = campaign_hull([("MgO", -3.0)], [], ["Mg", "O"])
    squeezed = [_rocksalt(a) for a in (1.50, 1.55, 1.60)]  # proposed cells whose relaxations failed
    train = [(_rocksalt(a), -3.0) for a in (2.10, 2.12, 2.14)] + [(s, None) for s in squeezed]
    cands = [("squeezed", _rocksalt(1.52)), ("ok", _rocksalt(2.11))]
    for surrogate in ("formation_energy", "e_above_hull"):
        left_out = AcquisitionConfig(function="greedy", relax_per_round=1, surrogate=surrogate)
        taught = left_out.model_copy(update={"failed_e_above_hull": 0.5})
        before = {r["hash"]: r["predicted_e_above_hull"] for r in rank_candidates(cands, train, hull.e_above_hull,
                                                                                   left_out, 0.1, 0)}
        after = {r["hash"]: r["predicted_e_above_hull"] for r in rank_candidates(cands, train, hull.e_above_hull,
                                                                                  taught, 0.1, 0)}
        assert before["squeezed"] == pytest.approx(0.0, abs=0.05)  # without failures it looks like MgO
        assert after["squeezed"] == pytest.approx(0.5, abs=0.1) and after["ok"] == pytest.approx(0.0, abs=0.1)


def test_the_mlip_screen_ranks_proposals_by_their_single_point_e_hull():
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    from tasks.acquisition.screen import UNSCREENABLE, screened_e_above_hull, single_point_energies

    hull = campaign_hull([("MgO", -3.0)], [], ["Mg", "O"])
    calc = CHGNetCalculator(model=CHGNet.load(verbose=False), use_device="cpu")
    cells = [_rocksalt(2.11), _rocksalt(1.60), _rocksalt(2.11, ("Mg", "Mg"))]
    energies = single_point_energies(cells, calc)
    assert np.isfinite(energies).all() and energies[1] > energies[0]  # squeezed MgO is far higher in energy

    class Broken:  # a calculator that cannot evaluate a cell
        def get_potential_energy(self, atoms=None, force_consistent=False):
            raise RuntimeError("no neighbours")

    assert np.isnan(single_point_energies(cells[:1], Broken())).all()
    mg_ref = float(energies[2])
    o_ref = float(single_point_energies([Structure(Lattice.cubic(12.0), ["O", "O"], [[0.5, 0.5, 0.5],
                                                                                   [0.5, 0.5, 0.6]])], calc)[0])
    ehull = screened_e_above_hull(cells[:2] + cells[:1], np.array([*energies[:2], np.nan]), {"Mg": mg_ref,
                                  "O": o_ref}, hull.e_above_hull)
    assert ehull[1] > ehull[0] and ehull[2] == UNSCREENABLE
    cfg = AcquisitionConfig(function="lcb", relax_per_round=1)
    assert cfg.surrogate == "mlip"
    rows = rank_candidates([("ok", cells[0]), ("squeezed", cells[1])], [], hull.e_above_hull, cfg, 0.1, 0, ehull[:2])
    assert [r["hash"] for r in rows if r["chosen"]] == ["ok"] and all(r["sigma"] == 0 for r in rows)
    with pytest.raises(EvaluationError, match="single-point"):
        rank_candidates([("ok", cells[0])], [], hull.e_above_hull, cfg, 0.1, 0)


def test_acquisition_config_needs_a_count():
    with pytest.raises(ValueError, match="relax_per_round"):
        AcquisitionConfig(function="lcb")
    assert AcquisitionConfig().function == "all"


@pytest.mark.slow
def test_a_campaign_relaxes_what_its_acquisition_chose(prefect_server, tmp_path):
    from flows.campaign import run_campaign, start_campaign
    from flows.report import candidates_table
    from tasks.context import relax_context
    from tasks.store import Store
    from tests.conftest import micro_config

    cfg = micro_config(tmp_path, **{"generator.n_per_round": 6, "acquisition.function": "lcb",
                                    "acquisition.relax_per_round": 2, "relax.max_steps": 60})
    store = Store(cfg.store_url())
    cid = start_campaign(cfg)
    run_campaign(cfg.store_url(), cid)
    _, spec, shash = relax_context(store, cid)
    relaxed = {c.hash for c, _ in store.relaxations(cid, spec.identity, shash)}
    for r in range(cfg.rounds):
        rows = store.acquisitions(cid, r)
        accepted = {c.hash for c in store.accepted(cid, r)}
        assert {x["hash"] for x in rows} == accepted and rows[0]["function"] == "lcb"
        chosen = store.chosen(cid, r)
        assert len(chosen) == min(2, len(accepted)) and set(chosen) <= relaxed
        assert not {x["hash"] for x in rows if not x["chosen"]} & relaxed  # the others cost nothing
        summary = store.round(cid, r).summary
        assert summary["acquisition"] == "lcb" and summary["relaxed"] == len(chosen)
    first = store.rounds(cid)[0].summary  # the known phases are relaxed before round 0 ranks: its hull needs them
    assert first["references_relaxed_first"] >= 3 and first["surrogate"] == "mlip"
    assert first["screened"] == len(store.acquisitions(cid, 0)) and first["surrogate_train"] is None
    for r in range(cfg.rounds):  # the MLIP screen: a single-point E_hull per proposal, no uncertainty
        assert all(np.isfinite(x["predicted_e_above_hull"]) and x["sigma"] == 0 for x in store.acquisitions(cid, r))
    assert "σ" in [c.header for c in candidates_table(cfg.store_url(), cid, 10).columns][6]
    off = micro_config(tmp_path / "off", **{"generator.n_per_round": 6, "acquisition.function": "lcb", "rounds": 1,
                                            "acquisition.relax_per_round": 2, "relax.max_steps": 60,
                                            "feedback.enabled": False})
    off_store = Store(off.store_url())
    off_id = start_campaign(off)
    run_campaign(off.store_url(), off_id)  # the control: the choice does not learn from the campaign's results
    assert {x["function"] for x in off_store.acquisitions(off_id, 0)} == {"random"}
    assert off_store.round(off_id, 0).summary["acquisition"] == "random (feedback.enabled: false)"


def test_dft_corrected_predictions_move_towards_completed_dft_values():
    from tasks.acquisition.correction import CompositionCorrection

    prior = CompositionCorrection(prior_sigma=0.1).fit([])
    mean0, sd0 = prior.predict(["MgO", "SiO2"])
    assert np.allclose(mean0, 0) and np.all(sd0 > 0)
    fitted = CompositionCorrection(prior_sigma=0.1).fit([("MgO", -2.9, -3.1), ("Mg2O2", -2.85, -3.05)])
    mean, sd = fitted.predict(["MgO", "SiO2", "Na2S"])
    assert -0.2 < mean[0] < -0.15 and sd[0] < sd0[0]  # pulled towards DFT (-0.2), more certain
    assert -0.2 < mean[1] < 0 and sd[1] < sd0[1] * 1.01  # shares O: partly moved
    assert mean[2] == 0 and sd[2] == pytest.approx(0.1 * np.sqrt(1 / 9 * 4 + 1 / 9))  # unseen elements: the prior


def test_dft_selection_by_lcb_explores_the_uncertain_candidate_and_greedy_keeps_the_old_order():
    from tasks.dft.select import rank_for_dft

    pool = [dict(hash="a", e_above_hull=0.05, novel=True, nsites=4), dict(hash="b", e_above_hull=0.06, novel=True,
            nsites=4), dict(hash="c", e_above_hull=0.5, novel=True, nsites=4)]
    greedy = rank_for_dft(pool, set(), 1, 10, 0.3, 8)
    assert [r["hash"] for r in greedy if r["chosen"]] == ["a"] and len(greedy) == 2  # c: above 0.3 eV/atom
    shifted = rank_for_dft(pool, set(), 1, 10, 0.3, 8, correction=([0.0, 0.0, -0.48], [0.01, 0.01, 0.05]),
                           function="lcb", kappa=1.0)
    assert [r["hash"] for r in shifted if r["chosen"]] == ["c"]  # DFT says its MLIP E_hull was 0.48 too high
    lcb = rank_for_dft(pool, set(), 1, 10, 0.3, 8, correction=([0.0, 0.0, 0.0], [0.01, 0.2, 0.0]), function="lcb")
    assert [r["hash"] for r in lcb if r["chosen"]] == ["b"] and lcb[0]["sigma"] == 0.2
