"""A property predictor with a calibrated sigma: the cheap oracle for targets an MLIP cannot give (band gaps).

Inputs are Magpie composition statistics (matminer, as in the acquisition surrogate); the model is a deep
ensemble (:class:`models.property_net.PropertyEnsemble`). Training holds out whole compositions and reports the
held-out MAE next to the train-mean baseline and the share of held-out values inside the predicted +-1 sigma and
+-2 sigma intervals (68.3 % and 95.4 % for a calibrated Gaussian). A checkpoint is a plain dict loaded with
``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Composition

from conf.predictor import UNITS, PredictorTrainConfig
from models.checkpoint import load_checkpoint, save_checkpoint, state_hash
from models.property_net import PropertyEnsemble
from tasks.errors import MatloopError

FEATURES = "magpie-composition-v1"
NON_NEGATIVE = frozenset({"band_gap"})


class PredictorError(MatloopError):
    """Training data or a predictor checkpoint that cannot be used (named in the message)."""


def composition_matrix(formulas: Sequence[str]) -> np.ndarray:
    """One row of Magpie statistics per formula (NaN and infinities set to 0)."""
    from tasks.acquisition.surrogate import composition_features

    rows = [composition_features(Composition(f).reduced_formula) for f in formulas]
    return np.nan_to_num(np.asarray(rows, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def read_labelled(paths: Sequence[Path], prop: str, exclude: Sequence[str] = ()) -> pd.DataFrame:
    """``formula`` (reduced) and ``value`` columns from MP-20-format CSVs; rows without a value, and the
    compositions in ``exclude``, are dropped."""
    frames = []
    for path in paths:
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise PredictorError(f"cannot read {path}: {exc}") from exc
        column = next((c for c in ("pretty_formula", "formula") if c in df.columns), None)
        if column is None or prop not in df.columns:
            raise PredictorError(f"{path} needs a formula column (pretty_formula or formula) and a {prop!r} column "
                                 f"(found {', '.join(map(str, df.columns[:12]))})")
        frames.append(pd.DataFrame({"formula": df[column], "value": pd.to_numeric(df[prop], errors="coerce")}))
    data = pd.concat(frames, ignore_index=True).dropna()
    data = data[np.isfinite(data["value"])]
    data["formula"] = [Composition(f).reduced_formula for f in data["formula"]]
    banned = {Composition(f).reduced_formula for f in exclude}
    data = data[~data["formula"].isin(banned)].reset_index(drop=True)
    if len(data) < 20:
        raise PredictorError(f"only {len(data)} labelled rows of {prop!r} in {', '.join(map(str, paths))}")
    return data


def held_out_formulas(formulas: Sequence[str], share: float, seed: int) -> np.ndarray:
    """Boolean mask: the rows whose composition falls in the held-out share (a hash of formula and seed, so a
    composition is never on both sides and the split does not depend on row order)."""
    def bucket(f: str) -> float:
        return int(hashlib.sha256(f"{seed}:{f}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return np.array([bucket(f) < share for f in formulas])


def calibration(y: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and the share of ``y`` within +-1 and +-2 sigma of ``mean``."""
    err = np.abs(y - mean)
    return {"n": int(len(y)), "mae": float(err.mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "coverage_1sigma": float((err <= sigma).mean()), "coverage_2sigma": float((err <= 2 * sigma).mean()),
            "mean_sigma": float(sigma.mean())}


@dataclass(frozen=True)
class PropertyPredictor:
    """A loaded predictor: ``predict`` gives mean and sigma in the property's unit."""

    property: str
    unit: str
    model: PropertyEnsemble
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: float
    y_std: float
    hash: str
    report: dict[str, Any]

    def predict(self, formulas: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if not len(formulas):
            return np.zeros(0), np.zeros(0)
        x = (torch.as_tensor(composition_matrix(formulas), dtype=torch.float32) - self.x_mean) / self.x_std
        self.model.eval()
        mu, sigma = self.model.predict(x)
        mean = mu.double().numpy() * self.y_std + self.y_mean
        if self.property in NON_NEGATIVE:
            mean = np.clip(mean, 0.0, None)
        return mean, sigma.double().numpy() * self.y_std

    @classmethod
    def load(cls, path: Path) -> PropertyPredictor:
        try:
            ckpt = load_checkpoint(path)
        except (OSError, ValueError) as exc:
            raise PredictorError(str(exc)) from exc
        if ckpt.get("kind") != "property-predictor" or ckpt.get("features") != FEATURES:
            raise PredictorError(f"{path} is not a matloop property predictor ({FEATURES})")
        model = PropertyEnsemble(**ckpt["model_config"]).float()  # float32 whatever torch's default dtype is
        model.load_state_dict(ckpt["state_dict"])
        return cls(ckpt["property"], ckpt["unit"], model, ckpt["x_mean"], ckpt["x_std"], ckpt["y_mean"],
                   ckpt["y_std"], ckpt["hash"], ckpt["report"])


def _fit(model: PropertyEnsemble, x: torch.Tensor, y: torch.Tensor, cfg: PredictorTrainConfig) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for start in range(0, len(y), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = model.loss(x[idx], y[idx], cfg.nll_beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        history.append(total / len(y) / model.n_members)
    return history


def train_predictor(cfg: PredictorTrainConfig) -> tuple[Path, dict[str, Any]]:
    """Train on ``cfg.data``, report on the held-out compositions, write the checkpoint; returns (path, report)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = read_labelled(cfg.data, cfg.property, cfg.exclude_formulas)
    test = held_out_formulas(list(data["formula"]), cfg.holdout, cfg.seed)
    if test.all() or not test.any():
        raise PredictorError(f"holdout {cfg.holdout} of {data['formula'].nunique()} compositions leaves one side "
                             "empty: give more data")
    features = composition_matrix(list(data["formula"]))
    x_all = torch.as_tensor(features, dtype=torch.float32)
    y_all = torch.as_tensor(data["value"].to_numpy(), dtype=torch.float32)
    train = torch.as_tensor(~test)
    x_mean, x_std = x_all[train].mean(0), x_all[train].std(0).clamp_min(1e-6)
    y_mean, y_std = float(y_all[train].mean()), max(float(y_all[train].std()), 1e-6)
    x = (x_all - x_mean) / x_std
    y = (y_all - y_mean) / y_std
    model_config = {"n_features": x.shape[1], **cfg.model.model_dump()}
    model = PropertyEnsemble(**model_config).float()
    history = _fit(model, x[train], y[train], cfg)
    meta = {"property": cfg.property, "features": FEATURES, "model_config": model_config}
    predictor = PropertyPredictor(cfg.property, UNITS[cfg.property], model, x_mean, x_std, y_mean, y_std,
                                  state_hash(model.state_dict(), meta), {})
    test_rows = data[test]
    mean, sigma = predictor.predict(list(test_rows["formula"]))
    y_test = test_rows["value"].to_numpy()
    report = {"property": cfg.property, "unit": UNITS[cfg.property], "train_rows": int((~test).sum()),
              "test_rows": int(test.sum()), "test_compositions": int(test_rows["formula"].nunique()),
              "held_out": calibration(y_test, mean, sigma),
              "baseline_mae_train_mean": float(np.abs(y_test - y_mean).mean()),
              "final_train_nll": history[-1] if history else math.nan, "epochs": cfg.epochs,
              "data": [Path(p).name for p in cfg.data], "seed": cfg.seed}
    if cfg.property in NON_NEGATIVE:
        zero = y_test <= 0
        report["held_out_zero_share"] = float(zero.mean())
        report["held_out_mae_nonzero"] = float(np.abs(y_test - mean)[~zero].mean()) if (~zero).any() else math.nan
    save_checkpoint(cfg.out, {"kind": "property-predictor", **meta, "unit": UNITS[cfg.property],
                              "state_dict": model.state_dict(), "x_mean": x_mean, "x_std": x_std,
                              "y_mean": y_mean, "y_std": y_std, "hash": predictor.hash, "report": report,
                              "train_config": {**cfg.model_dump(mode="json"), "data": report["data"],
                                               "out": Path(cfg.out).name}})  # no local folders in the file
    return Path(cfg.out), report
