"""``matloop train-predictor``: train the property predictor (a deep ensemble over composition features) on
MP-20-format CSVs and print its held-out error and the calibration of its sigma."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train_predictor_cmd(
    data: Annotated[list[Path], typer.Option(help="MP-20-format CSV(s): pretty_formula (or formula) and the "
                                             "property column.")],
    property_: Annotated[str, typer.Option("--property", help="band_gap | formation_energy_per_atom")] = "band_gap",
    out: Annotated[Path | None, typer.Option(help="Checkpoint path (default checkpoints/predictor-<property>.pt).")]
    = None,
    exclude: Annotated[str, typer.Option(help="Comma-separated formulas never trained on (held-out phases).")] = "",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: dotted.key=value (epochs, holdout, "
                                                    "model.n_members, ...).")] = None,
) -> None:
    """Train a property predictor with uncertainty; the checkpoint loads with weights_only and carries its report."""
    from conf.loader import ConfigError, apply_override
    from flows.cli_common import console, fail
    from tasks.errors import MatloopError

    raw: dict = {"property": property_, "data": [str(p) for p in data],
                 "out": str(out or Path("checkpoints") / f"predictor-{property_}.pt"),
                 "exclude_formulas": [f for f in exclude.split(",") if f]}
    try:
        for assignment in set_ or []:
            apply_override(raw, assignment)
        from conf.predictor import PredictorTrainConfig

        cfg = PredictorTrainConfig.model_validate(raw)
    except (ConfigError, ValueError) as exc:
        fail(exc)
    from tasks.properties.predictor import train_predictor

    try:
        path, report = train_predictor(cfg)
    except MatloopError as exc:
        fail(exc)
    except OSError as exc:
        fail(OSError(f"cannot write {exc.filename or cfg.out}: {exc.strerror or exc}"))
    held = report["held_out"]
    console.print(f"{report['property']} ({report['unit']}): {report['train_rows']} training rows, "
                  f"{report['test_rows']} held out ({report['test_compositions']} compositions)")
    console.print(f"held-out MAE {held['mae']:.3f} {report['unit']} (train-mean baseline "
                  f"{report['baseline_mae_train_mean']:.3f}), RMSE {held['rmse']:.3f}; within 1 sigma "
                  f"{held['coverage_1sigma']:.1%} (68.3% if calibrated), within 2 sigma {held['coverage_2sigma']:.1%} "
                  "(95.4%)")
    console.print(f"checkpoint: {path}")
