"""``matloop train``: build a TrainRunConfig from flags and/or YAML and run the training flow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    generator: Annotated[str | None, typer.Option(help="Generator to train: diffusion | gan (default: the "
                                                  "config's, else diffusion).")] = None,
    data: Annotated[list[Path] | None, typer.Option(help="Training file(s): CSV, CIF folder, extxyz.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML of a TrainRunConfig (conf/train_*.yaml).")] = None,
    properties: Annotated[str | None, typer.Option(help="Comma-separated property columns to condition on.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Train until this many epochs.")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint path.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: dotted.key=value.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint at --out.")] = False,
    prefect: Annotated[bool, typer.Option(help="Run as a Prefect flow (visible in the UI).")] = True,
) -> None:
    """Train a generator on structure files; the checkpoint carries config, normalisation and a hash."""
    import yaml

    from conf.loader import ConfigError, apply_override
    from flows.cli_common import console, fail

    try:
        raw = yaml.safe_load(config.read_text()) if config else {}
    except OSError as exc:
        fail(ConfigError(f"--config {config}: {exc.strerror or exc}"))
    except yaml.YAMLError as exc:
        fail(ConfigError(f"--config {config} is not YAML: {str(exc).splitlines()[0]}"))
    if raw is None or not isinstance(raw, dict):
        fail(ConfigError(f"--config {config}: expected a mapping of TrainRunConfig fields (conf/train_*.yaml), "
                         f"got {type(raw).__name__}"))
    if generator is not None:  # validated with the config: diffusion | gan
        raw["generator"] = generator
    if data:
        raw["data"] = [str(p) for p in data]
    if properties is not None:
        raw.setdefault("model", {})["properties"] = [p for p in properties.split(",") if p]
    if epochs is not None:
        raw.setdefault("train", {})["epochs"] = epochs
    if out is not None:
        raw["out"] = str(out)
    try:
        for assignment in set_ or []:
            apply_override(raw, assignment)
        from conf.training import TrainRunConfig

        run = TrainRunConfig.model_validate(raw)
    except (ConfigError, ValueError) as exc:
        fail(exc)
    from tasks.errors import MatloopError

    try:
        if prefect:
            from flows.server import prefect_api
            from flows.train import train_generator

            with prefect_api():
                path = train_generator(run, resume)
        else:
            from tasks.train import describe_epoch, train_model

            path = train_model(run, resume, lambda r: console.print(describe_epoch(r)))
    except MatloopError as exc:
        fail(exc)
    except OSError as exc:  # the checkpoint's folder or file cannot be written
        fail(OSError(f"cannot write {exc.filename or run.out}: {exc.strerror or exc}"))
    console.print(f"checkpoint: {path}")


def release_checkpoint_cmd(
    src: Annotated[Path, typer.Argument(help="A checkpoint written by `matloop train`.")],
    dst: Annotated[Path, typer.Argument(help="Where its release form goes (e.g. models/weights/diffusion.pt).")],
) -> None:
    """Strip a checkpoint for shipping: EMA weights only, no optimizer or RNG state (same hash, ~1/4 the size)."""
    from flows.cli_common import console, fail
    from models.checkpoint import load_checkpoint, release_checkpoint

    try:
        load_checkpoint(src)
    except (OSError, ValueError, RuntimeError) as exc:  # missing, not a torch file, not a matloop checkpoint
        fail(ValueError(f"{src}: {exc}"))
    out = release_checkpoint(src, dst)
    console.print(f"released {src} -> {out} ({out.stat().st_size / 1e6:.1f} MB)")
