"""Shared by the generator benchmarks: a checkpoint's train / held-out split and CDVAE-protocol scoring."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("comp_validity", "struct_validity", "validity", "uniqueness", "cov_recall", "cov_precision",
           "wasserstein.density", "wasserstein.n_elements")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options every generator benchmark takes (splits, scoring, threads, output)."""
    parser.add_argument("--max-atoms", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Fingerprinting processes.")
    parser.add_argument("--no-coverage", action="store_true")
    parser.add_argument("--baseline-n", type=int, default=1000,
                        help="Real training crystals scored the same way (the data's own numbers); 0 skips.")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for sampling.")
    parser.add_argument("--reference", type=Path, default=None,
                        help="Score against these crystals (CSV / CIF folder / extxyz) instead of the checkpoint's "
                             "held-out ones, e.g. a split the model never saw that is as large as a paper's test "
                             "split (COV-P depends on the reference size).")
    parser.add_argument("--save-samples", type=Path, default=None,
                        help="Write the generated crystals here (extxyz; %%s is replaced by the model name) "
                             "so `matloop evaluate` can rescore them without sampling again.")


def split_of(checkpoint: Path, ckpt: dict, max_atoms: int, reference: Path | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, reference) structure tables of a checkpoint: its held-out crystals (ids written beside it), or
    the crystals of ``reference``, which must share no id with the training data."""
    from tasks.errors import MatloopError
    from tasks.train import load_training_table

    held_ids = set(json.loads(Path(checkpoint).with_suffix(".holdout.json").read_text())["ids"])
    data = load_training_table([Path(p) for p in ckpt["data_paths"]], max_atoms)
    held = data["id"].astype(str).isin(held_ids)
    train = data[~held].reset_index(drop=True)
    if reference is None:
        return train, data[held].reset_index(drop=True)
    ref = load_training_table([Path(reference)], max_atoms)
    shared = set(ref["id"].astype(str)) & set(train["id"].astype(str))
    if shared:
        raise MatloopError(f"{reference} shares {len(shared)} id(s) with the training data of {checkpoint} "
                           f"(e.g. {sorted(shared)[:3]}); a reference set must be unseen by the model")
    return train, ref


def score(samples: Sequence, held: pd.DataFrame, train: pd.DataFrame | None, dataset: str, coverage: bool,
          workers: int) -> dict:
    """Validity, uniqueness, COV-R/P (dataset cutoffs), Wasserstein distances, novelty of valid vs train
    (``None`` when ``train`` is None)."""
    from conf.schema import MatcherConfig
    from tasks.metrics.samples import EvaluationOptions, evaluate_samples
    from tasks.metrics.matching import fast_decisions

    table = pd.DataFrame({"id": [f"g{i}" for i in range(len(samples))], "structure": list(samples), "error": ""})
    metrics, df = evaluate_samples(table, held[["id", "structure", "error"]], opts=EvaluationOptions(
        dataset=dataset, coverage=coverage, workers=workers))
    if train is None:
        return {**{k: metrics.get(k) for k in METRICS}, "novelty_of_valid_vs_train": None}
    novel = fast_decisions([s for s, v in zip(df["structure"], df["valid"]) if v], list(train["structure"]),
                           MatcherConfig(), workers=workers)
    return {**{k: metrics.get(k) for k in METRICS},
            "novelty_of_valid_vs_train": float(np.mean([d.novel for d in novel])) if novel else None}


def data_baseline(train: pd.DataFrame, held: pd.DataFrame, dataset: str, n: int, coverage: bool,
                  workers: int, seed: int = 0) -> dict:
    """The same metrics for ``n`` real training crystals against the held-out ones: what a perfect
    generator of this data would score with this reference set (COV-P in particular depends on its size)."""
    pick = train.sample(n=min(n, len(train)), random_state=seed)
    metrics = score(list(pick["structure"]), held, None, dataset, coverage, workers)
    metrics.pop("novelty_of_valid_vs_train")
    return {"n": len(pick), "metrics": metrics}


def ratios(metrics: dict, baseline: dict) -> dict:
    """metric / data-baseline metric, for the rates where higher is better."""
    keys = ("comp_validity", "struct_validity", "validity", "uniqueness", "cov_recall", "cov_precision")
    return {k: metrics[k] / baseline[k] for k in keys
            if metrics.get(k) is not None and baseline.get(k)}


def save_samples(path: Path | None, name: str, samples: Sequence) -> None:
    """Write generated crystals as extxyz (``%s`` in ``path`` becomes ``name``); nothing when ``path`` is None."""
    if path is None:
        return
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    out = Path(str(path).replace("%s", name))
    out.parent.mkdir(parents=True, exist_ok=True)
    write(out, [AseAtomsAdaptor.get_atoms(s) for s in samples], format="extxyz")


def training_cost(history: list[dict]) -> dict:
    # median over all epochs: robust to epochs slowed by other work on the machine (mean kept too)
    seconds = [h["seconds"] for h in history]
    return {"seconds_per_epoch": float(np.median(seconds)), "seconds_per_epoch_min": float(np.min(seconds)),
            "seconds_per_epoch_mean": float(np.mean(seconds))}
