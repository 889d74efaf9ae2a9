"""Train a microstructure generator on a dataset's train split; load it back and sample it by process condition.

The checkpoint is the shared Trainer's (EMA weights, resume, content hash) with what sampling needs: the model
family and config, the condition columns and their scaling, the dataset config it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from conf.micro import FolderSource, MicroDataConfig, MicroTrainConfig
from models.checkpoint import load_checkpoint
from models.micro_data import ConditionScaler, ImageDataset
from models.micro_models import MicroDiffusion, MicroDiffusionConfig, MicroGAN, MicroGANConfig
from models.training import Trainer, resume_trainer
from tasks.micro.dataset import MicroDataError, load_dataset

KINDS = {"micro-gan": (MicroGAN, MicroGANConfig), "micro-diffusion": (MicroDiffusion, MicroDiffusionConfig)}


def build_model(cfg: MicroTrainConfig, n_conditions: int):
    if cfg.model == "gan":
        model_cfg = cfg.gan.model_copy(update={"n_conditions": n_conditions, "size": cfg.data.size})
        return "micro-gan", MicroGAN(model_cfg), model_cfg
    model_cfg = cfg.diffusion.model_copy(update={"n_conditions": n_conditions})
    return "micro-diffusion", MicroDiffusion(model_cfg), model_cfg


def resume_config(checkpoint: Path) -> dict:
    """The run in ``checkpoint`` as a raw MicroTrainConfig (its dataset, model and training settings): what
    ``--resume`` starts from before the user's overrides."""
    ckpt = _micro_checkpoint(checkpoint)
    family = "gan" if ckpt["kind"] == "micro-gan" else "diffusion"
    model = {k: v for k, v in ckpt["model_config"].items() if k not in ("n_conditions", "size")}
    return {"data": ckpt["data_config"], "model": family, family: model, "train": ckpt["train_config"]}


def portable_data_config(cfg: MicroDataConfig) -> dict:
    """``cfg`` with its paths absolute, so the checkpoint finds its dataset from any working directory."""
    source = cfg.source
    if isinstance(source, FolderSource):
        source = source.model_copy(update={"folder": source.folder.resolve(),
                                           "conditions_csv": source.conditions_csv.resolve()})
    return cfg.model_copy(update={"source": source, "cache_dir": Path(cfg.cache_dir).resolve()}).model_dump(mode="json")


def train_micro(cfg: MicroTrainConfig, out: Path, resume: bool = False,
                log: Callable[[dict], None] | None = None) -> Path:
    """Train on the train split of ``cfg.data`` and checkpoint to ``out``. ``resume``: continue the run in ``out``,
    whose dataset and model ``cfg`` must repeat (only its ``train`` settings, e.g. more epochs, may differ)."""
    data = load_dataset(cfg.data)
    images, table = data.split("train")
    if len(images) == 0:
        raise MicroDataError("the dataset's train split is empty")
    conditions = table[list(data.condition_columns)].to_numpy(dtype=float)
    torch.manual_seed(cfg.train.seed)
    kind, model, model_cfg = build_model(cfg, conditions.shape[1])
    meta = {"kind": kind, "model_config": model_cfg.model_dump(mode="json"),
            "condition_columns": list(data.condition_columns), "size": cfg.data.size,
            "data_config": portable_data_config(cfg.data)}
    if resume:
        ckpt = _micro_checkpoint(out)
        changed = [k for k in ("kind", "model_config", "condition_columns", "size", "data_config")
                   if ckpt[k] != meta[k]]
        if changed:
            raise MicroDataError(f"--resume continues the run in {out}, whose {' and '.join(changed)} differ from the "
                                 "config given: only train settings may change (or train a new checkpoint)")
        trainer = resume_trainer(model, out, cfg.train)
        scaler = ConditionScaler(**trainer.meta["normalizer"])
    else:
        scaler = ConditionScaler.fit(conditions)
        trainer = Trainer(model, cfg.train, {**meta, "normalizer": scaler.state()})
    dataset = ImageDataset(images, conditions, scaler)
    monitor = None
    if cfg.model == "gan" and cfg.monitor.every:
        from models.micro_collapse import MicroCollapseMonitor

        monitor = MicroCollapseMonitor(torch.as_tensor(images), dataset.c, cfg.monitor)
    trainer.fit(dataset, checkpoint=Path(out), log=log, monitor=monitor)
    return Path(out)


def _micro_checkpoint(path: Path) -> dict:
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") not in KINDS:
        raise MicroDataError(f"{path} is not a microstructure generator (kind {ckpt.get('kind')!r}; allowed: "
                             f"{', '.join(KINDS)})")
    return ckpt


@dataclass
class MicroGenerator:
    """A trained generator ready to sample (EMA weights, eval mode)."""

    kind: str
    model: MicroGAN | MicroDiffusion
    scaler: ConditionScaler
    columns: tuple[str, ...]
    size: int
    hash: str

    def sample(self, conditions: dict[str, float], n: int, seed: int = 0, steps: int = 50,
               guidance: float = 1.0) -> np.ndarray:
        """``n`` binary images for one process condition (a value for every condition column)."""
        missing = [c for c in self.columns if c not in conditions]
        if missing:
            raise MicroDataError(f"condition needs {', '.join(self.columns)}; missing {', '.join(missing)}")
        c = self.scaler(np.array([[float(conditions[k]) for k in self.columns]] * n))
        gen = torch.Generator().manual_seed(seed)
        if isinstance(self.model, MicroGAN):
            return self.model.sample(c, gen).numpy()
        return self.model.sample(c, self.size, steps=steps, guidance=guidance, generator=gen).numpy()


def load_micro_generator(path: Path) -> MicroGenerator:
    ckpt = _micro_checkpoint(path)
    cls, cfg_cls = KINDS[ckpt["kind"]]
    model = cls(cfg_cls.model_validate(ckpt["model_config"]))
    model.load_state_dict(ckpt["ema_state_dict"])  # the EMA weights sample best
    model.eval()
    return MicroGenerator(ckpt["kind"], model, ConditionScaler(**ckpt["normalizer"]),
                          tuple(ckpt["condition_columns"]), int(ckpt["size"]), ckpt["hash"])
