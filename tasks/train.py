"""Training and fine-tuning generators from structure files (pure functions; flows/train.py wraps them)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from conf.training import TrainRunConfig
from tasks.errors import MatloopError
from tasks.metrics.io import load_structure_table

log = logging.getLogger("matloop.train")


def load_training_table(paths: Sequence[Path], max_atoms: int,
                        columns: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """All readable, ordered structures with at most ``max_atoms`` sites from ``paths`` (bad rows logged). A file
    without a property's column reads the first of its other names in ``columns`` that it has."""
    frames = []
    for path in paths:
        df = load_structure_table(Path(path))
        for prop, aliases in (columns or {}).items():
            alias = next((a for a in aliases if a in df.columns), None)
            if prop not in df.columns and alias is not None:
                df[prop] = pd.to_numeric(df[alias], errors="coerce")
        bad = df["structure"].isna()
        for i, err in zip(df.loc[bad, "id"], df.loc[bad, "error"]):
            log.warning("skipped %s in %s: %s", i, path, err)
        frames.append(df[~bad])
    df = pd.concat(frames, ignore_index=True)
    df = df[[s.is_ordered and len(s) <= max_atoms for s in df["structure"]]].reset_index(drop=True)
    if df.empty:
        raise MatloopError(f"no usable training structure (ordered, <= {max_atoms} sites) in "
                           f"{[str(p) for p in paths]}")
    return df


def drop_matching(df: pd.DataFrame, exclude: Sequence[Path]) -> tuple[pd.DataFrame, list[str]]:
    """``df`` without the structures that match (StructureMatcher, the filter's tolerances) a structure of the
    ``exclude`` files, and the ids dropped."""
    from conf.schema import MatcherConfig
    from tasks.metrics.matching import MatchIndex

    if not exclude:
        return df, []
    index = MatchIndex(MatcherConfig())
    for path in exclude:
        table = load_structure_table(Path(path))
        for i, s in zip(table["id"], table["structure"]):
            if s is not None:
                index.add(i, s)
    hit = [index.find(s) is not None for s in df["structure"]]
    dropped = [str(i) for i, h in zip(df["id"], hit) if h]
    return df[[not h for h in hit]].reset_index(drop=True), dropped


def exclude_ids(paths: Sequence[Path]) -> list[str]:
    """Ids of the structures in the exclude files (recorded in the checkpoint, so a benchmark can check that
    its held-out phases were kept away from the model)."""
    return sorted({str(i) for p in paths for i in load_structure_table(Path(p))["id"]})


def split_holdout(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    if fraction <= 0:
        return df, df.iloc[:0]
    order = np.random.default_rng(seed).permutation(len(df))
    n_hold = int(round(fraction * len(df)))
    train, held = np.sort(order[n_hold:]), np.sort(order[:n_hold])
    return df.iloc[train].reset_index(drop=True), df.iloc[held].reset_index(drop=True)


def property_values(df: pd.DataFrame, names: Sequence[str], unlabelled_systems: Sequence[str] = ()
                    ) -> np.ndarray | None:
    """The (n, len(names)) label matrix (NaN = unknown); structures inside one of ``unlabelled_systems`` (a system
    or a sub-system of it) have every label masked."""
    if not names:
        return None
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise MatloopError(f"training data has no column(s) {missing}; it has {list(df.columns)}")
    values = df[list(names)].to_numpy(dtype=float)
    systems = [set(s.split("-")) for s in unlabelled_systems]
    if systems:
        inside = np.array([any({el.symbol for el in s.composition.elements} <= sys for sys in systems)
                           for s in df["structure"]], dtype=bool)
        values[inside] = np.nan
        log.info("masked the labels of %d structure(s) inside %s", int(inside.sum()), list(unlabelled_systems))
    return values


def describe_epoch(record: dict) -> str:
    """One log line for a training record: losses, then collapse-monitor figures and restarts if any."""
    skip = {"epoch", "seconds", "healthy", "reason", "restart"}
    parts = [f"{k} {v:.4f}" for k, v in record.items() if k not in skip and isinstance(v, float)]
    line = f"epoch {record['epoch']} ({record['seconds']:.2f} s): " + ", ".join(parts)
    if "restart" in record:
        line += f"; COLLAPSE ({record['reason']}): restart {record['restart']} from the last healthy state"
    return line


def train_model(run: TrainRunConfig, resume: bool = False, log_epoch: Callable[[dict], None] | None = None) -> Path:
    """Train (or resume) the generator family ``run.generator`` on ``run.data``; writes the checkpoint and the
    held-out ids. GAN training is watched for mode collapse (``run.collapse``) and restarts from its last
    healthy state when it collapses."""
    import os

    import torch

    from models.api import build_model, training_meta
    from models.collapse import CollapseMonitor
    from models.crystal import Normalizer
    from models.data import CrystalDataset
    from models.training import Trainer, TrainingStopped, resume_trainer

    torch.set_num_threads(run.threads or os.cpu_count() or 1)
    df, excluded = drop_matching(load_training_table(run.data, run.max_atoms, run.columns), run.exclude)
    if excluded:
        log.info("left out %d training structure(s) matching %s: %s", len(excluded),
                 [str(p) for p in run.exclude], ", ".join(excluded))
    df, held = split_holdout(df, run.holdout, run.train.seed)
    structures: list[Structure] = list(df["structure"])
    props = property_values(df, run.model.properties, run.unlabelled_systems)
    if resume and run.out.exists():
        trainer = resume_trainer(_model_from_checkpoint(run.out), run.out, run.train)
        normalizer = trainer.model.normalizer
    else:
        normalizer = Normalizer.fit(structures, props, run.model.properties)
        data0 = CrystalDataset(structures, normalizer, props)
        meta = {**training_meta(run.model, data0), "data_paths": [str(p) for p in run.data],
                "columns": run.columns, "unlabelled_systems": run.unlabelled_systems,
                "excluded_ids": excluded, "exclude_ids": exclude_ids(run.exclude)}
        trainer = Trainer(build_model(run.model, normalizer, seed=run.train.seed), run.train, meta)
    data = CrystalDataset(structures, normalizer, props)
    run.out.parent.mkdir(parents=True, exist_ok=True)
    run.out.with_suffix(".holdout.json").write_text(json.dumps({"ids": [str(i) for i in held["id"]]}))
    monitor = CollapseMonitor(data, run.collapse) if run.generator == "gan" and run.collapse.every else None
    try:
        trainer.fit(data, checkpoint=run.out, log=log_epoch, monitor=monitor)
    except TrainingStopped as exc:
        log.warning("%s: %s", run.out, exc)
    return run.out


def _model_from_checkpoint(path: Path):
    from models.api import load_model

    model, _ = load_model(path, use_ema=False)
    model.train()
    return model


def fine_tune(checkpoint: Path, structures: Sequence[Structure], props: np.ndarray | None, epochs: int, out: Path,
              replay: Sequence[Structure] | None = None, replay_props: np.ndarray | None = None,
              replay_fraction: float = 0.5) -> Path:
    """Continue training ``checkpoint`` (any generator family) on new (structure, properties) pairs for
    ``epochs`` more epochs, mixing ``replay_fraction`` of every batch from ``replay`` (by default the
    checkpoint's own training files) so the model does not forget the original distribution."""
    from models.checkpoint import load_checkpoint
    from models.data import CrystalDataset
    from models.training import TrainConfig, resume_trainer

    model = _model_from_checkpoint(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig.model_validate({**ckpt["train_config"], "epochs": ckpt["epoch"] + epochs,
                                      "replay_fraction": replay_fraction})
    trainer = resume_trainer(model, checkpoint, cfg)
    trainer.meta = {**trainer.meta, "fine_tuned_from": ckpt["hash"]}
    if replay is None:
        df = load_training_table([Path(p) for p in ckpt.get("data_paths", [])], 200, ckpt.get("columns"))
        replay = list(df["structure"])
        replay_props = property_values(df, model.cfg.properties, ckpt.get("unlabelled_systems", ()))
    norm = model.normalizer
    trainer.fit(CrystalDataset(list(structures), norm, props), checkpoint=out,
                replay=CrystalDataset(list(replay), norm, replay_props))
    return out
