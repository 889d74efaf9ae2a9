"""Band-gap targets in a campaign: the evaluate step predicts them (mean and sigma, source predictor), a candidate
meets a target on its best value (lab > DFT > predictor), and the round summary counts satisfaction per source."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from conf.schema import TargetRange
from tasks.properties.targets import best_values, describe, satisfaction
from tasks.results import PropertyValue
from tests.test_property_predictor import _toy_csv


def test_best_value_is_lab_then_dft_then_predictor_and_satisfaction_counts_each_source():
    props = [PropertyValue("a", "band_gap", 0.5, "eV", "predictor", 0.4), PropertyValue("a", "band_gap", 2.0, "eV", "dft"),
             PropertyValue("b", "band_gap", 2.5, "eV", "predictor", 0.3), PropertyValue("b", "band_gap", 0.1, "eV", "lab"),
             PropertyValue("b", "band_gap", 3.0, "eV", "dft"), PropertyValue("c", "e_above_hull", 0.0, "eV/atom", "mlip")]
    assert best_values(props, ["band_gap"]) == {"a": {"band_gap": 2.0}, "b": {"band_gap": 0.1}}
    targets = {"band_gap": TargetRange(min=1.5, max=3.0), "e_above_hull": TargetRange(max=0.1)}
    got = satisfaction(props, {"a", "b", "c"}, targets)
    assert set(got) == {"band_gap"}  # MLIP targets are counted elsewhere
    assert got["band_gap"]["predictor"] == {"met": 1, "of": 2, "rate": 0.5}
    assert got["band_gap"]["dft"]["met"] == 2 and got["band_gap"]["lab"] == {"met": 0, "of": 1, "rate": 0.0}
    assert satisfaction(props, {"c"}, targets)["band_gap"]["dft"] == {"met": 0, "of": 0, "rate": None}
    assert describe(got) == "band_gap: lab 0/1, dft 2/2, predictor 1/2" and describe(None) == "-"


@pytest.fixture(scope="module")
def toy_predictor(tmp_path_factory):
    from conf.predictor import PredictorTrainConfig
    from tasks.properties.predictor import train_predictor

    tmp = tmp_path_factory.mktemp("predictor")
    cfg = PredictorTrainConfig(data=[_toy_csv(tmp)], out=tmp / "gap.pt", epochs=60, holdout=0.2, batch_size=16,
                               model={"n_members": 3, "hidden_dim": 32})
    return train_predictor(cfg)[0]


@pytest.mark.slow
def test_a_band_gap_campaign_predicts_stores_and_counts_its_target(prefect_server, tmp_path, toy_predictor):
    from flows.campaign import run_campaign, start_campaign
    from flows.cli import app
    from tasks.properties.predictor import PropertyPredictor
    from tasks.store import Store
    from tests.conftest import micro_config

    cfg = micro_config(tmp_path, **{"rounds": 1, "dft.backend": "none", "evaluate.predictor": str(toy_predictor),
                                    "target.properties": {"e_above_hull": {"max": 0.1}, "band_gap": {"min": 1.0}},
                                    "generator.n_per_round": 6, "acquisition.function": "lcb",
                                    "acquisition.relax_per_round": 4})
    cid = start_campaign(cfg)
    run_campaign(cfg.store_url(), cid)
    store = Store(cfg.store_url())
    props = store.properties(cid)
    mlip = {p.hash for p in props if p.source == "mlip" and p.name == "e_above_hull"}
    predicted = {p.hash: p for p in props if p.source == "predictor"}
    assert mlip and set(predicted) == mlip  # every evaluated candidate has a prediction
    pred = PropertyPredictor.load(toy_predictor)
    for p in predicted.values():
        assert p.name == "band_gap" and p.unit == "eV" and p.uncertainty > 0 and p.value >= 0
    formulas = {c.hash: c.formula for _, _, c in store.proposals(cid, 0)}
    h = sorted(predicted)[0]
    assert predicted[h].value == pytest.approx(float(pred.predict([formulas[h]])[0][0]), abs=1e-6)
    summary = store.round(cid, 0).summary
    counts = summary["property_satisfaction"]["band_gap"]
    assert counts["predictor"]["of"] == summary["evaluated"] and counts["dft"]["of"] == 0
    ehull = {p.hash: p.value for p in props if p.name == "e_above_hull" and p.source == "mlip"}
    mine = [x for x in predicted if x in formulas]
    assert summary["meets_targets"] == sum(ehull[x] <= 0.1 and predicted[x].value >= 1.0 for x in mine)
    assert summary["predictor_correction"]["band_gap"]["n"] == 0  # no DFT or lab value to retrain it on yet
    guided = summary["generator_notes"]["property_guidance"]  # generation was steered towards the gap window
    assert guided["predictor"] == pred.hash and guided["scale"] == 1.0 and 0 <= guided["p_chosen"] <= 1
    acquired = summary["target_probability"]  # the acquisition weighed the predicted band gaps
    assert 0 <= acquired["chosen"] <= 1 and 0 <= acquired["ranked"] <= 1 and acquired["predictor"] == pred.hash
    res = CliRunner().invoke(app, ["status", cid, "--store", cfg.store_url()])
    assert res.exit_code == 0 and "band_gap: lab -, dft -, predictor" in res.output.replace("\n", " ")
    from tasks.store.views import candidate_frame

    frame = candidate_frame(cfg.store_url(), cid).set_index("hash")
    assert frame.loc[h, "band_gap"] == pytest.approx(predicted[h].value) and frame.loc[h, "band_gap_source"] == \
        "predictor" and frame.loc[h, "band_gap_sigma"] == pytest.approx(predicted[h].uncertainty)
    res = CliRunner().invoke(app, ["candidates", cid, "--store", cfg.store_url(), "--include-known"],
                             env={"COLUMNS": "300"})
    assert res.exit_code == 0 and "band_gap (eV)" in res.output and "(predictor)" in res.output, res.output


def test_the_target_probability_steers_what_is_relaxed_except_under_random_choice(toy_predictor):
    from pymatgen.core import Lattice, Structure

    from conf.loop import AcquisitionConfig
    from tasks.acquire import rank_candidates
    from tasks.properties.predictor import PropertyPredictor
    from tasks.properties.targets import target_probability

    pred = PropertyPredictor.load(toy_predictor)
    p = target_probability(pred, ["MgF2", "CuO"], {"band_gap": TargetRange(min=3.0)})
    assert p[0] > 0.5 > p[1] and ((0 <= p) & (p <= 1)).all()
    assert target_probability(pred, ["MgF2"], {"e_above_hull": TargetRange(max=0.1)}).tolist() == [1.0]
    cells = [(h, Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])) for h in ("a", "b", "c")]
    screened = np.array([0.0, 0.0, 0.01])  # equal E_hull for a and b
    for function, want in (("greedy", ["b"]), ("lcb", ["b"]), ("random", None)):
        cfg = AcquisitionConfig(function=function, relax_per_round=1, diversity=0.0)
        rows = rank_candidates(cells, [], lambda c, e: e, cfg, 0.1, 0, screened, np.array([0.1, 0.9, 0.9]))
        chosen = [r["hash"] for r in rows if r["chosen"]]
        if want is None:  # random choice ignores the targets: the same pick as without them
            plain = rank_candidates(cells, [], lambda c, e: e, cfg, 0.1, 0, screened)
            assert chosen == [r["hash"] for r in plain if r["chosen"]]
        else:
            assert chosen == want


def test_a_predictor_of_another_property_is_refused(tmp_path, toy_predictor):
    from tasks.properties.predictor import PredictorError
    from tasks.properties.targets import predictor_for
    from tests.conftest import micro_config

    cfg = micro_config(tmp_path, **{"evaluate.predictor": str(toy_predictor)})
    assert predictor_for(cfg) is None  # only E_hull targeted: nothing to predict
    cfg = micro_config(tmp_path, **{"evaluate.predictor": str(tmp_path / "missing.pt"),
                                    "target.properties": {"band_gap": {"min": 1.0}}})
    with pytest.raises(PredictorError, match="missing.pt"):
        predictor_for(cfg)


def test_the_campaign_correction_moves_predictions_towards_its_dft_values_per_composition():
    """Retrained on the campaign's DFT/lab gaps: compositions sharing elements with a computed one move towards
    it (the more values, the closer and surer), others keep the predictor's value with a wider sigma."""
    from tasks.properties.targets import Correction, campaign_correction, recalibrated

    formulas = {"a": "MgO", "b": "Mg2O2", "c": "MgO2", "d": "CuO", "e": "LiF"}
    assert Correction().apply(["MgO"], np.array([1.0]), np.array([0.5])) == (1.0, 0.5)
    preds = [PropertyValue(h, "band_gap", 1.0, "eV", "predictor", 0.5) for h in "abcde"]
    one = campaign_correction(preds + [PropertyValue("a", "band_gap", 2.0, "eV", "dft")], "band_gap", formulas)
    three = campaign_correction(preds + [PropertyValue(h, "band_gap", 2.0, "eV", "dft") for h in "abc"], "band_gap",
                                formulas)
    assert (one.n, three.n) == (1, 3)
    (m1, s1), (m3, s3) = (c.apply(["MgO"], np.array([1.0]), np.array([0.5])) for c in (one, three))
    assert 1.0 < m1[0] < m3[0] < 2.0 and s3[0] < s1[0]
    cu, cu_sigma = three.apply(["CuO"], np.array([1.0]), np.array([0.5]))  # shares only O with what was computed
    assert 1.0 < cu[0] < m3[0] and cu_sigma[0] > s3[0]
    lif, lif_sigma = three.apply(["LiF"], np.array([1.0]), np.array([0.5]))  # nothing in common: unchanged, wider
    assert lif[0] == pytest.approx(1.0) and lif_sigma[0] > 0.5
    lab = campaign_correction(preds + [PropertyValue("a", "band_gap", 2.0, "eV", "dft"),
                                       PropertyValue("a", "band_gap", 0.5, "eV", "lab")], "band_gap", formulas)
    assert lab.apply(["MgO"], np.array([1.0]), np.array([0.5]))[0][0] < 1.0  # the lab value outranks DFT
    props, fitted = recalibrated(preds + [PropertyValue(h, "band_gap", 2.0, "eV", "dft") for h in "abc"],
                                 ["band_gap"], formulas)
    d = next(p for p in props if p.hash == "d" and p.source == "predictor")
    assert d.value == pytest.approx(cu[0]) and d.uncertainty == pytest.approx(cu_sigma[0])
    assert fitted["band_gap"].record()["n"] == 3 and set(fitted["band_gap"].record()["per_element"]) == {"Mg", "O"}


class _Linear:
    """A stand-in predictor for the guide's own arithmetic: the gap is the number of characters of the formula."""

    property, unit, hash = "band_gap", "eV", "toy"

    def predict(self, formulas):
        return np.array([float(len(f)) for f in formulas]), np.full(len(formulas), 0.5)


def test_the_guide_weights_formulas_by_their_probability_to_the_power_of_the_scale():
    from tasks.properties.guide import FLOOR, property_guide
    from tasks.properties.targets import Correction

    window = {"band_gap": TargetRange(min=2.5, max=3.5)}
    assert property_guide(_Linear(), window, 0.0) is None  # scale 0: unguided
    assert property_guide(None, window, 1.0) is None
    assert property_guide(_Linear(), {"e_above_hull": TargetRange(max=0.1)}, 1.0) is None  # nothing to guide on
    one, sharp = property_guide(_Linear(), window, 1.0), property_guide(_Linear(), window, 3.0)
    p = one.probability(["MgO", "Li2O", "BaTiO3"])  # gaps 3, 4, 6: in, edge, far
    assert p[0] > 0.6 and 0.1 < p[1] < 0.3 and p[2] < FLOOR
    np.testing.assert_allclose(one(["MgO", "Li2O", "BaTiO3"]), [p[0], p[1], FLOOR])
    np.testing.assert_allclose(sharp(["MgO", "Li2O"]), p[:2] ** 3)
    shifted = property_guide(_Linear(), window, 1.0, Correction([("Li2O", 4.0, 3.0)] * 3, noise=0.1))
    assert shifted.probability(["Li2O"])[0] > 0.6  # the campaign's correction moves what the guide aims at
    report = one.report(["MgO"])
    assert report["p_chosen"] == pytest.approx(p[0]) and report["p_pool"] == pytest.approx(np.mean(
        [p[0], p[1], p[2]])) and report["scale"] == 1.0 and report["target"] == {"min": 2.5, "max": 3.5}


@pytest.mark.parametrize("name", ["substitution", "random"])
def test_guidance_keeps_proposals_likelier_to_meet_the_band_gap_target(name, toy_predictor, tmp_path):
    """Same generator, same seed: with the guide, what is kept has a higher predicted chance of a gap <= 1 eV
    (the toy data: Mg oxides wide, Cu oxides 0)."""
    from conf.generator import generator_config
    from conf.schema import SeedsConfig
    from tasks.context import make_conditions
    from tasks.generate import generate_candidates
    from tasks.properties.guide import property_guide
    from tasks.properties.predictor import PropertyPredictor
    from tasks.seedset import build_seed_set
    from tests.conftest import micro_config

    pred = PropertyPredictor.load(toy_predictor)
    cfg = micro_config(tmp_path, **{"target.chemical_system": ["Mg", "Cu", "O"], "target.properties":
                                {"band_gap": {"max": 1.0}}})
    conditions = make_conditions(cfg.target, 0)
    seeds = build_seed_set(SeedsConfig(), cfg.target)
    gen = generator_config(name=name, n_per_round=8)
    plain, _ = generate_candidates(gen, seeds, conditions, None, 7)
    guide = property_guide(pred, conditions.property_targets, 2.0)
    guided, notes = generate_candidates(gen, seeds, conditions, None, 7, guide)
    p = lambda cands: float(np.mean(guide.probability([c.formula for c in cands])))  # noqa: E731
    assert plain and guided and p(guided) > p(plain) + 0.2, (p(guided), p(plain))
    assert notes["property_guidance"]["p_chosen"] == pytest.approx(p(guided))
    assert notes["property_guidance"]["p_chosen"] >= notes["property_guidance"]["p_pool"]
