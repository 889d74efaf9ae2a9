"""The training loop shared by the crystal generators: AdamW, gradient clipping, EMA weights, checkpoints
that resume exactly, fine-tuning on new data with replay of the original data, and an optional health
monitor that restarts from the last good state (GAN mode collapse).

A trainable model is a :class:`LossModel` (``loss(batch, generator) -> (loss, parts)``: one optimizer, stepped
here) or a :class:`SteppedModel` (``optimizer_groups()`` and ``train_step(...)``: adversarial training, several
optimizers stepped by the model). Everything else is here.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from pydantic import BaseModel, Field
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from models.checkpoint import load_checkpoint, save_checkpoint, state_hash
from models.crystal import CrystalBatch
from models.data import CrystalDataset
from models.strict import Strict


@runtime_checkable
class LossModel(Protocol):
    """A model trained by one AdamW optimizer on the loss it returns (the diffusion model)."""

    def loss(self, batch: CrystalBatch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]: ...


@runtime_checkable
class SteppedModel(Protocol):
    """A model that steps its own optimizers (the GAN: generator and critic)."""

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], dict]]:
        """``{name: (parameters, AdamW overrides)}``: one optimizer per entry."""
        ...

    def train_step(self, batch: CrystalBatch, generator: torch.Generator, optimizers: dict[str, torch.optim.Optimizer],
                   grad_clip: float) -> dict[str, float]: ...


class TrainConfig(Strict):
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


class MonitorReport(BaseModel):
    """What a health monitor found at the end of an epoch."""

    metrics: dict[str, float]
    healthy: bool
    reason: str = ""
    judged: bool = Field(True, description="False while the monitor is warming up: healthy by default, not "
                         "because the model passed the floors.")


class Monitor(Protocol):
    """Checks the model every ``every`` epochs; unhealthy reports restore the last healthy state."""

    every: int
    max_restarts: int
    restart_lr_factor: float  # learning rates are multiplied by this at every restart

    def __call__(self, trainer: Trainer) -> MonitorReport: ...


class TrainingStopped(RuntimeError):
    """Training gave up after ``max_restarts`` unhealthy reports; the last healthy state was kept."""


def build_optimizers(model: nn.Module, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    spec: dict[str, tuple[Iterable[nn.Parameter], dict]] = (
        model.optimizer_groups() if isinstance(model, SteppedModel) else {"model": (model.parameters(), {})})
    return {name: torch.optim.AdamW(params, **{"lr": cfg.lr, "weight_decay": cfg.weight_decay, **overrides})
            for name, (params, overrides) in spec.items()}


def ema_of(model: nn.Module, decay: float) -> AveragedModel:
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


class Trainer:
    """Owns the model, its EMA copy, the optimizer and the RNG; ``fit`` trains and checkpoints."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, meta: dict[str, Any]) -> None:
        if not isinstance(model, (LossModel, SteppedModel)):
            raise TypeError(f"{type(model).__name__} is neither a LossModel nor a SteppedModel")
        self.model, self.cfg, self.meta = model, cfg, meta
        self.ema = ema_of(model, cfg.ema_decay)
        self.optimizers = build_optimizers(model, cfg)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.epoch, self.step, self.history = 0, 0, []
        self.last_good: dict[str, Any] | None = None
        self.last_good_judged = False  # whether the kept healthy state passed the monitor's floors
        self.restarts = 0

    def _optimizer_state(self) -> dict[str, Any]:
        if list(self.optimizers) == ["model"]:  # one optimizer: its state dict as such (checkpoint format 1)
            return self.optimizers["model"].state_dict()
        return {"groups": {name: opt.state_dict() for name, opt in self.optimizers.items()}}

    def _load_optimizer_state(self, state: dict[str, Any]) -> None:
        if list(self.optimizers) == ["model"]:
            self.optimizers["model"].load_state_dict(state)
            return
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["groups"][name])

    def payload(self) -> dict[str, Any]:
        ema_state = self.ema.module.state_dict()
        return {**self.meta, "state_dict": self.model.state_dict(), "ema_state_dict": ema_state,
                "ema_n_averaged": self.ema.n_averaged, "optimizer": self._optimizer_state(),
                "rng_state": self.generator.get_state(), "epoch": self.epoch, "step": self.step,
                "history": self.history, "train_config": self.cfg.model_dump(),
                "hash": state_hash(ema_state, {k: self.meta[k] for k in ("kind", "model_config", "normalizer")})}

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["state_dict"])
        self.ema.module.load_state_dict(ckpt["ema_state_dict"])
        self.ema.n_averaged.copy_(ckpt["ema_n_averaged"])
        if "optimizer" in ckpt:  # a released checkpoint has none: fine-tuning starts a fresh optimizer
            self._load_optimizer_state(ckpt["optimizer"])
        if "rng_state" in ckpt:  # ... and its batches come from the train config's seed
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

    def _step(self, batch) -> dict[str, float]:
        if isinstance(self.model, SteppedModel):
            return self.model.train_step(batch, self.generator, self.optimizers, self.cfg.grad_clip)
        loss, detail = self.model.loss(batch, self.generator)
        optimizer = self.optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        optimizer.step()
        return {"loss": loss.item(), **detail}

    def _check(self, monitor: Monitor, record: dict) -> bool:
        """Run the monitor; on an unhealthy report restore the last healthy state (weights, EMA, optimizers;
        the RNG and the epoch count run on) with learning rates scaled by ``restart_lr_factor`` per restart so
        far, so the restart takes a different, gentler path. False: give up."""
        report = monitor(self)
        record.update({f"monitor.{k}": v for k, v in report.metrics.items()}, healthy=report.healthy)
        if report.healthy:
            self.last_good = copy.deepcopy(self.payload())
            self.last_good_judged = report.judged
            return True
        self.restarts += 1
        record["restart"] = self.restarts
        record["reason"] = report.reason
        if self.last_good is not None:
            rng, epoch, step, history = self.generator.get_state(), self.epoch, self.step, self.history
            self.restore(self.last_good)
            self.generator.set_state(rng)
            self.epoch, self.step, self.history = epoch, step, history
            for optimizer in self.optimizers.values():  # the same step sizes would likely collapse again
                for group in optimizer.param_groups:
                    group["lr"] *= monitor.restart_lr_factor ** self.restarts
        return self.restarts <= monitor.max_restarts

    def fit(self, data: CrystalDataset, checkpoint: Path | None = None, replay: CrystalDataset | None = None,
            log: Callable[[dict], None] | None = None, monitor: Monitor | None = None) -> list[dict]:
        """Train until ``cfg.epochs`` (counting epochs already done when resumed).

        With a ``monitor``, every ``monitor.every`` epochs the model is checked; an unhealthy model is put
        back to its last healthy state, and after ``monitor.max_restarts`` restarts training stops with that
        state checkpointed and :class:`TrainingStopped` raised.
        """
        self.model.train()
        while self.epoch < self.cfg.epochs:
            start, parts, n = time.perf_counter(), {}, 0
            for batch in self._batches(data, replay):
                detail = self._step(batch)
                self.ema.update_parameters(self.model)
                self.step += 1
                n += 1
                for k, v in detail.items():
                    parts[k] = parts.get(k, 0.0) + v
            self.epoch += 1
            record = {"epoch": self.epoch, "seconds": time.perf_counter() - start,
                      **{k: v / max(n, 1) for k, v in parts.items()}}
            self.history.append(record)
            carry_on = True
            if monitor is not None and monitor.every and self.epoch % monitor.every == 0:
                carry_on = self._check(monitor, record)
                self.model.train()
            if log:
                log(record)
            due = self.epoch % self.cfg.checkpoint_every == 0 or self.epoch == self.cfg.epochs
            if checkpoint is not None and (due or not carry_on):
                save_checkpoint(checkpoint, self.payload())
            if not carry_on:
                if self.last_good is None:  # (also after a resume: the healthy state is not checkpointed)
                    kept = "no healthy state was recorded in this run, so the current state was kept"
                elif self.last_good_judged:
                    kept = f"the last healthy state was kept (epoch {self.last_good['epoch']})"
                else:
                    kept = ("no epoch after warm-up passed the monitor: the state kept is a warm-up one, never "
                            f"judged healthy (epoch {self.last_good['epoch']})")
                raise TrainingStopped(f"training stopped at epoch {self.epoch} after {self.restarts} restarts "
                                      f"({record.get('reason')}); {kept}")
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
