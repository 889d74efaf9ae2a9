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
    assert summary["predictor_offset"]["band_gap"]["n"] == 0  # no DFT or lab value to recalibrate on yet
    acquired = summary["target_probability"]  # the acquisition weighed the predicted band gaps
    assert 0 <= acquired["chosen"] <= 1 and 0 <= acquired["ranked"] <= 1 and acquired["predictor"] == pred.hash
    res = CliRunner().invoke(app, ["status", cid, "--store", cfg.store_url()])
    assert res.exit_code == 0 and "band_gap: lab -, dft -, predictor" in res.output.replace("\n", " ")


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


def test_the_campaign_offset_moves_predictions_towards_its_dft_values_with_shrinking_sigma():
    from tasks.properties.targets import Offset, campaign_offset, fit_offset, recalibrated

    assert fit_offset([], {}) == Offset()
    preds = [PropertyValue(h, "band_gap", 1.0, "eV", "predictor", 0.5) for h in "abcd"]
    one = campaign_offset(preds + [PropertyValue("a", "band_gap", 2.0, "eV", "dft")], "band_gap")
    three = campaign_offset(preds + [PropertyValue(h, "band_gap", 2.0, "eV", "dft") for h in "abc"], "band_gap")
    assert 0 < one.shift < three.shift < 1.0 and three.sigma < one.sigma and (one.n, three.n) == (1, 3)
    lab = campaign_offset(preds + [PropertyValue("a", "band_gap", 2.0, "eV", "dft"),
                                   PropertyValue("a", "band_gap", 0.5, "eV", "lab")], "band_gap")
    assert lab.shift < 0  # the lab value outranks DFT for the same candidate
    props, offsets = recalibrated(preds + [PropertyValue(h, "band_gap", 2.0, "eV", "dft") for h in "abc"], ["band_gap"])
    d = next(p for p in props if p.hash == "d" and p.source == "predictor")
    assert d.value == pytest.approx(1.0 + offsets["band_gap"].shift) and d.uncertainty > 0.5
