"""Microstructure datasets: simulate (or read) the images of every process condition, split, cache.

A dataset is an image array ``(n, size, size)`` of bool and a DataFrame with one row per image: its condition
columns (``mean_composition``, ``anneal_time`` or ``porosity``, ``blobiness``, or the user's), ``condition`` (the
condition's index) and ``split`` (``train``, ``val`` or ``test``). Test conditions are held out whole, chosen among
the interior points of the grid (never at its edge, so the test asks for interpolation); the other conditions' images
go to train or val by sample. Simulated datasets are cached as ``<cache_dir>/<kind>-<hash>.npz`` keyed on the
config, written atomically, so one command reproduces them and a second call reads them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from conf.micro import FolderSource, MicroDataConfig, PorousSource, SpinodalSource
from tasks.errors import MatloopError

SPLITS = ("train", "val", "test")


class MicroDataError(MatloopError):
    """A microstructure dataset cannot be built or read (bad images, bad conditions file, unusable config)."""


@dataclass(frozen=True)
class MicroDataset:
    images: np.ndarray  # (n, size, size) bool
    table: pd.DataFrame  # one row per image: condition columns, condition, split
    condition_columns: tuple[str, ...]

    def split(self, name: str) -> tuple[np.ndarray, pd.DataFrame]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; allowed: {', '.join(SPLITS)}")
        mask = (self.table["split"] == name).to_numpy()
        return self.images[mask], self.table[mask].reset_index(drop=True)


def config_hash(cfg: MicroDataConfig) -> str:
    data = cfg.model_dump(mode="json", exclude={"cache_dir"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(cfg: MicroDataConfig) -> Path:
    """Where a simulated dataset of ``cfg`` is cached."""
    return Path(cfg.cache_dir) / f"{cfg.source.kind}-{config_hash(cfg)}.npz"


def held_out_conditions(points: list[tuple[float, ...]], n: int, seed: int) -> set[tuple[float, ...]]:
    """``n`` of the interior ``points`` (no coordinate at the smallest or largest value of its axis)."""
    lows, highs = np.min(points, axis=0), np.max(points, axis=0)
    interior = sorted({p for p in points if all(lo < x < hi for x, lo, hi in zip(p, lows, highs))})
    if n > len(interior):
        raise MicroDataError(f"test_conditions={n} but only {len(interior)} of the {len(set(points))} conditions are "
                             "interior (no value at the edge of its range): lower test_conditions or widen the grid")
    rng = np.random.default_rng(seed)
    return {interior[i] for i in rng.choice(len(interior), size=n, replace=False)}


def _simulate(source: SpinodalSource | PorousSource, condition: dict[str, float], n: int, size: int,
              seed: int) -> np.ndarray:
    from tasks.micro.physics import porous_images, spinodal_images

    if isinstance(source, SpinodalSource):
        return spinodal_images(condition["mean_composition"], condition["anneal_time"], n=n, size=size, seed=seed,
                               dt=source.dt, gamma=source.gamma)
    return porous_images(condition["porosity"], condition["blobiness"], n=n, size=size, seed=seed)


def simulate_dataset(cfg: MicroDataConfig) -> MicroDataset:
    """Simulate every grid condition's ``per_condition`` images (seeded per condition) and split them."""
    if isinstance(cfg.source, FolderSource):
        raise MicroDataError("a folder source is read, not simulated: use load_dataset")
    grid = cfg.source.grid()
    columns = tuple(grid)
    test = held_out_conditions(list(itertools.product(*grid.values())), cfg.test_conditions, cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    images, rows = [], []
    for index, point in enumerate(itertools.product(*grid.values())):
        condition = dict(zip(columns, point))
        images.append(_simulate(cfg.source, condition, cfg.per_condition, cfg.size, seed=cfg.seed * 100_003 + index))
        if point in test:
            splits = ["test"] * cfg.per_condition
        else:
            n_val = int(round(cfg.val_fraction * cfg.per_condition))
            splits = list(rng.permutation(["val"] * n_val + ["train"] * (cfg.per_condition - n_val)))
        rows += [{**{k: float(v) for k, v in condition.items()}, "condition": index, "split": str(s)} for s in splits]
    return MicroDataset(np.concatenate(images), pd.DataFrame(rows), columns)


def load_dataset(cfg: MicroDataConfig) -> MicroDataset:
    """The dataset of ``cfg``: from the cache when it was simulated before, else simulated and cached; a folder
    source is read and validated."""
    if isinstance(cfg.source, FolderSource):
        return read_folder(cfg)
    path = cache_path(cfg)
    if path.is_file():
        columns = tuple(cfg.source.grid())
        with np.load(path, allow_pickle=False) as data:
            table = pd.DataFrame({**{c: data[f"col_{c}"] for c in columns}, "condition": data["condition"],
                                  "split": data["split"].astype(str)})
            return MicroDataset(data["images"].astype(bool), table, columns)
    dataset = simulate_dataset(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            table = dataset.table
            np.savez_compressed(fh, images=dataset.images, condition=table["condition"].to_numpy(),
                                split=table["split"].to_numpy(dtype=str), config=np.array(cfg.model_dump_json()),
                                **{f"col_{c}": table[c].to_numpy(dtype=float) for c in dataset.condition_columns})
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dataset


def _read_image(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        img = np.asarray(iio.imread(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure is the user's file: name it
        raise MicroDataError(f"{path}: not a readable PNG/TIFF image ({type(exc).__name__}: {exc})") from None
    if img.ndim == 3 and img.shape[-1] in (3, 4):  # RGB(A) of a two-phase map: its first channel
        img = img[..., 0]
    if img.ndim != 2:
        raise MicroDataError(f"{path}: expected a 2D image, got shape {img.shape}")
    lo, hi = float(img.min()), float(img.max())
    return img > (lo + hi) / 2 if hi > lo else np.full(img.shape, bool(hi > 0))


def read_folder(cfg: MicroDataConfig) -> MicroDataset:
    """The user's images and conditions, every problem named with its file and row."""
    source = cfg.source
    assert isinstance(source, FolderSource)
    if not source.folder.is_dir():
        raise MicroDataError(f"image folder {source.folder} does not exist")
    try:
        table = pd.read_csv(source.conditions_csv)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MicroDataError(f"conditions file {source.conditions_csv}: {exc}") from None
    if "file" not in table.columns:
        raise MicroDataError(f"conditions file {source.conditions_csv} needs a 'file' column (has: "
                             f"{', '.join(map(str, table.columns))})")
    if "condition" in table.columns:
        raise MicroDataError(f"conditions file {source.conditions_csv}: 'condition' is reserved (matloop numbers the "
                             "conditions itself); rename that column")
    if table.empty:
        raise MicroDataError(f"conditions file {source.conditions_csv} has no rows")
    columns = tuple(c for c in table.columns if c not in ("file", "split"))
    if not columns:
        raise MicroDataError(f"conditions file {source.conditions_csv} has no condition column besides 'file'")
    for col in columns:
        values = pd.to_numeric(table[col], errors="coerce")
        if values.isna().any():
            row = int(values.isna().to_numpy().argmax())
            raise MicroDataError(f"conditions file {source.conditions_csv}, row {row + 2}: "
                                 f"{col}={table[col].iloc[row]!r} is not a number")
        table[col] = values.astype(float)
    images = []
    for i, name in enumerate(table["file"]):
        path = source.folder / str(name)
        if not path.is_file():
            raise MicroDataError(f"conditions file {source.conditions_csv}, row {i + 2}: no image {path}")
        img = _read_image(path)
        if img.shape != (cfg.size, cfg.size):
            raise MicroDataError(f"{path}: {img.shape[0]}x{img.shape[1]} pixels, the config says size={cfg.size}")
        images.append(img)
    keys = table[list(columns)].apply(tuple, axis=1)
    table["condition"] = pd.factorize(keys)[0]
    if "split" not in table.columns:
        test = held_out_conditions(list(keys), cfg.test_conditions, cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        table["split"] = ["test" if k in test else "val" if rng.random() < cfg.val_fraction else "train"
                          for k in keys]
    else:
        _check_split_column(table, source.conditions_csv)
    return MicroDataset(np.stack(images), table.drop(columns=["file"]), columns)


def _check_split_column(table: pd.DataFrame, csv: Path) -> None:
    """A user's own ``split`` column: known names, and test conditions held out whole (a condition with images in
    test and in train or val would let the test score a condition the generator was trained on)."""
    bad = sorted(set(map(str, table["split"])) - set(SPLITS))
    if bad:
        raise MicroDataError(f"conditions file {csv}: split must be one of {', '.join(SPLITS)} (got {', '.join(bad)})")
    test = set(table.loc[table["split"] == "test", "condition"])
    shared = test & set(table.loc[table["split"] != "test", "condition"])
    if shared:
        row = int(table.index[table["condition"].isin(shared) & (table["split"] != "test")][0])
        raise MicroDataError(f"conditions file {csv}, row {row + 2}: this condition also has test images; the test "
                             "holds out whole conditions (put all of its images in test, or none)")
