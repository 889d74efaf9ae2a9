"""The training loop shared by the crystal generators: AdamW, gradient clipping, EMA weights, checkpoints
that resume exactly, and fine-tuning on new data with replay of the original data.

A trainable model exposes ``loss(batch, generator) -> (loss, parts)``; everything else is here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from models.checkpoint import load_checkpoint, save_checkpoint, state_hash
from models.data import CrystalDataset


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 0
    checkpoint_every: int = Field(10, ge=1, description="Epochs between checkpoints.")
    replay_fraction: float = Field(0.5, ge=0, le=1, description="Fine-tuning: share of each batch from the "
                                   "original data.")


# checkpoint keys written by the trainer; everything else is model metadata carried along
TRAINING_STATE = frozenset({"format", "state_dict", "ema_state_dict", "ema_n_averaged", "optimizer", "rng_state",
                            "epoch", "step", "history", "train_config", "hash"})


def ema_of(model: nn.Module, decay: float) -> AveragedModel:
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


class Trainer:
    """Owns the model, its EMA copy, the optimizer and the RNG; ``fit`` trains and checkpoints."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, meta: dict[str, Any]) -> None:
        self.model, self.cfg, self.meta = model, cfg, meta
        self.ema = ema_of(model, cfg.ema_decay)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.epoch, self.step, self.history = 0, 0, []

    def payload(self) -> dict[str, Any]:
        ema_state = self.ema.module.state_dict()
        return {**self.meta, "state_dict": self.model.state_dict(), "ema_state_dict": ema_state,
                "ema_n_averaged": self.ema.n_averaged, "optimizer": self.optimizer.state_dict(),
                "rng_state": self.generator.get_state(), "epoch": self.epoch, "step": self.step,
                "history": self.history, "train_config": self.cfg.model_dump(),
                "hash": state_hash(ema_state, {k: self.meta[k] for k in ("kind", "model_config", "normalizer")})}

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["state_dict"])
        self.ema.module.load_state_dict(ckpt["ema_state_dict"])
        self.ema.n_averaged.copy_(ckpt["ema_n_averaged"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.generator.set_state(ckpt["rng_state"])
        self.epoch, self.step, self.history = ckpt["epoch"], ckpt["step"], list(ckpt["history"])

    def _batches(self, data: CrystalDataset, replay: CrystalDataset | None):
        if replay is None or self.cfg.replay_fraction == 0:
            yield from data.batches(self.cfg.batch_size, self.generator)
            return
        n_new = max(1, round(self.cfg.batch_size * (1 - self.cfg.replay_fraction)))
        n_old = self.cfg.batch_size - n_new
        order = torch.randperm(len(data), generator=self.generator).tolist()
        for start in range(0, len(order), n_new):
            new = data.batch(order[start:start + n_new])
            old = replay.batch(torch.randint(len(replay), (n_old,), generator=self.generator).tolist())
            yield concat_batches(new, old)

    def fit(self, data: CrystalDataset, checkpoint: Path | None = None, replay: CrystalDataset | None = None,
            log: Callable[[dict], None] | None = None) -> list[dict]:
        """Train until ``cfg.epochs`` (counting epochs already done when resumed)."""
        self.model.train()
        while self.epoch < self.cfg.epochs:
            start, parts, n = time.perf_counter(), {}, 0
            for batch in self._batches(data, replay):
                loss, detail = self.model.loss(batch, self.generator)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                self.optimizer.step()
                self.ema.update_parameters(self.model)
                self.step += 1
                n += 1
                for k, v in {"loss": loss.item(), **detail}.items():
                    parts[k] = parts.get(k, 0.0) + v
            self.epoch += 1
            record = {"epoch": self.epoch, "seconds": time.perf_counter() - start,
                      **{k: v / max(n, 1) for k, v in parts.items()}}
            self.history.append(record)
            if log:
                log(record)
            due = self.epoch % self.cfg.checkpoint_every == 0 or self.epoch == self.cfg.epochs
            if checkpoint is not None and due:
                save_checkpoint(checkpoint, self.payload())
        return self.history


def concat_batches(a, b):
    """Join two CrystalBatches (atoms of b after atoms of a)."""
    from models.crystal import CrystalBatch

    props = None if a.props is None else torch.cat([a.props, b.props])
    mask = None if a.prop_mask is None else torch.cat([a.prop_mask, b.prop_mask])
    return CrystalBatch(torch.cat([a.frac, b.frac]), torch.cat([a.species, b.species]),
                        torch.cat([a.lattice, b.lattice]), torch.cat([a.num_atoms, b.num_atoms]),
                        torch.cat([a.batch, b.batch + a.num_graphs]), props, mask)


def resume_trainer(model: nn.Module, path: Path, cfg: TrainConfig | None = None) -> Trainer:
    """A trainer restored from a checkpoint (its own train config unless ``cfg`` overrides, e.g. more epochs)."""
    ckpt = load_checkpoint(path)
    meta = {k: v for k, v in ckpt.items() if k not in TRAINING_STATE}
    trainer = Trainer(model, cfg or TrainConfig.model_validate(ckpt["train_config"]), meta)
    trainer.restore(ckpt)
    return trainer
