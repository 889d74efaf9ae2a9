"""The property predictor: a deep ensemble whose sigma grows away from its data, trained by
``matloop train-predictor`` on an MP-20-format CSV with a held-out report, loaded offline with weights_only."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from models.property_net import PropertyEnsemble


def test_ensemble_sigma_grows_away_from_the_training_data():
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 256).unsqueeze(1)
    y = torch.sin(3 * x[:, 0]) + 0.05 * torch.randn(256)
    model = PropertyEnsemble(n_features=1, n_members=5, hidden_dim=32, num_layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        opt.zero_grad()
        model.loss(x, y).backward()
        opt.step()
    mu, sigma = model.predict(torch.tensor([[0.2], [6.0]]))
    assert abs(float(mu[0]) - np.sin(0.6)) < 0.15
    assert float(sigma[1]) > 3 * float(sigma[0])  # the members disagree far from the data
    with pytest.raises(ValueError, match="positive sizes"):
        PropertyEnsemble(n_features=0)


def _toy_csv(tmp_path):
    """Binary oxides and fluorides with a made-up 'gap' that grows with the anion's share and is 0 for
    Cu/Ag compounds: learnable from composition alone."""
    rows = []
    cations = {"Mg": 2, "Ca": 2, "Sr": 2, "Zn": 2, "Al": 3, "Ga": 3, "Y": 3, "Sc": 3, "Cu": 1, "Ag": 1, "Li": 1,
               "Na": 1, "K": 1, "Ti": 4, "Zr": 4, "Hf": 4}
    for (el, q), anion, n in itertools.product(cations.items(), ("O", "F", "S"), (1, 2)):
        charge = {"O": 2, "F": 1, "S": 2}[anion]
        a, b = charge * n, q * n
        gap = 0.0 if el in ("Cu", "Ag") else {"F": 6.0, "O": 4.0, "S": 2.0}[anion] + 0.1 * q
        rows.append({"pretty_formula": f"{el}{a}{anion}{b}", "band_gap": gap})
    path = tmp_path / "toy.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_train_predictor_reports_held_out_error_and_loads_offline(tmp_path):
    from tasks.properties.predictor import PredictorError, PropertyPredictor

    data = _toy_csv(tmp_path)
    out = tmp_path / "pred.pt"
    res = CliRunner().invoke(app, ["train-predictor", "--data", str(data), "--out", str(out), "--exclude", "MgO",
                                   "--set", "epochs=150", "--set", "holdout=0.25", "--set", "model.n_members=3",
                                   "--set", "model.hidden_dim=32", "--set", "batch_size=16"])
    assert res.exit_code == 0, res.output
    assert "held-out MAE" in res.output and "within 1 sigma" in res.output and str(out) in res.output
    pred = PropertyPredictor.load(out)
    assert pred.property == "band_gap" and pred.unit == "eV" and len(pred.hash) == 16
    report = pred.report
    assert report["held_out"]["mae"] < report["baseline_mae_train_mean"]  # it learned something
    assert 0 <= report["held_out"]["coverage_1sigma"] <= report["held_out"]["coverage_2sigma"] <= 1
    assert report["train_rows"] + report["test_rows"] == 16 * 3 * 2 - 2  # both MgO rows (Mg2O2 = MgO) excluded
    mean, sigma = pred.predict(["MgF2", "CuO", "MgF2"])
    assert mean.shape == sigma.shape == (3,) and (mean >= 0).all() and (sigma > 0).all()
    assert mean[0] == mean[2] and mean[0] > mean[1]  # fluoride gap above the 'metallic' copper oxide
    again = PropertyPredictor.load(out)
    assert np.allclose(again.predict(["MgF2"])[0], mean[:1], atol=1e-5)
    torch.save({"format": "matloop-checkpoint-1", "kind": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(PredictorError, match="not a matloop property predictor"):
        PropertyPredictor.load(tmp_path / "other.pt")


@pytest.mark.parametrize("contents, message", [
    ("formula,energy\nMgO,1\n", "needs a formula column"),
    ("pretty_formula,band_gap\nMgO,1\n", "only 1 labelled rows"),
])
def test_bad_training_data_is_one_clear_error(tmp_path, contents, message):
    path = tmp_path / "bad.csv"
    path.write_text(contents)
    res = CliRunner().invoke(app, ["train-predictor", "--data", str(path), "--out", str(tmp_path / "p.pt")])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "p.pt").exists()
    res = CliRunner().invoke(app, ["train-predictor", "--data", str(path), "--property", "volume"])
    assert res.exit_code == 2 and "property" in res.output
