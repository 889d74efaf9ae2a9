"""Mode-collapse monitor for the microstructure GAN, the image counterpart of :mod:`models.collapse`.

A conditional GAN collapses *within* a condition: every z gives (nearly) the same image, or a few images. So the
monitor holds a few training conditions with their real images and, every ``every`` epochs, samples as many images
per condition from the EMA generator and compares them with the real ones, pixel by pixel but translation-invariant
(images are periodic: a shifted copy is the same microstructure):

* diversity ratio: mean distance between two generated images of a condition over that between two real ones;
* uniqueness: share of generated images with no earlier image of their condition within ``duplicate_distance``
  (fraction of differing pixels at the best shift), over the same share for the real images.

After ``warmup`` epochs either below its floor makes the report unhealthy and the Trainer restarts from the last
healthy state with gentler learning rates (:meth:`models.training.Trainer._check`).
"""

from __future__ import annotations

import torch
from pydantic import Field

from models.strict import Strict
from models.training import MonitorReport, Trainer


class MicroCollapseConfig(Strict):
    every: int = Field(5, ge=0, description="Epochs between checks (0: never).")
    warmup: int = Field(10, ge=0, description="Epochs before a report may be unhealthy.")
    conditions: int = Field(4, ge=1, description="Training conditions checked.")
    per_condition: int = Field(8, ge=2, description="Images per checked condition (real and generated).")
    min_diversity_ratio: float = Field(0.5, ge=0, description="Floor on generated / real diversity.")
    min_uniqueness: float = Field(0.5, ge=0, le=1, description="Floor on generated / real uniqueness.")
    duplicate_distance: float = Field(0.01, gt=0, lt=0.5, description="Pixel fraction under which two images are "
                                      "duplicates.")
    max_restarts: int = Field(3, ge=0)
    restart_lr_factor: float = Field(0.5, gt=0, le=1)
    seed: int = 1234


def shift_distances(x: torch.Tensor) -> torch.Tensor:
    """(n, n) fraction of differing pixels between binary images ``x`` (n, H, W) at their best periodic shift."""
    s = x.float() * 2 - 1
    f = torch.fft.rfft2(s)
    corr = torch.fft.irfft2(f[:, None] * f[None].conj(), s=s.shape[-2:])  # (n, n, H, W) agreements - disagreements
    pixels = s[0].numel()
    return (pixels - corr.flatten(2).max(-1).values.round()) / (2 * pixels)


def _stats(groups: list[torch.Tensor], tol: float) -> tuple[float, float]:
    """Mean pairwise distance and uniqueness share over groups of images of one condition each."""
    spread, unique = [], []
    for x in groups:
        d = shift_distances(x)
        n = len(x)
        spread.append(float(d.sum() / (n * (n - 1))))
        unique.append(float((~torch.tril(d < tol, diagonal=-1).any(1)).float().mean()))
    return sum(spread) / len(spread), sum(unique) / len(unique)


class MicroCollapseMonitor:
    """Callable health check for :meth:`Trainer.fit` of a :class:`models.micro_models.MicroGAN`."""

    def __init__(self, images: torch.Tensor, conditions: torch.Tensor, cfg: MicroCollapseConfig | None = None) -> None:
        """``images`` (n, H, W) bool and their scaled ``conditions`` (n, k), the training set."""
        cfg = cfg or MicroCollapseConfig()
        self.cfg, self.every, self.max_restarts = cfg, cfg.every, cfg.max_restarts
        self.restart_lr_factor = cfg.restart_lr_factor
        keys, inverse = torch.unique(conditions, dim=0, return_inverse=True)
        gen = torch.Generator().manual_seed(cfg.seed)
        groups = [torch.nonzero(inverse == k).flatten() for k in torch.randperm(len(keys), generator=gen).tolist()]
        groups = [g[: cfg.per_condition] for g in groups if len(g) >= 2][: cfg.conditions]
        self.conditions = [conditions[g[0]] for g in groups]
        self.sizes = [len(g) for g in groups]
        if not groups:  # no condition has two training images: nothing to compare variety with, no checks
            self.every, self.data_diversity, self.data_uniqueness = 0, 0.0, 0.0
            return
        self.data_diversity, self.data_uniqueness = _stats([images[g] for g in groups], cfg.duplicate_distance)

    def __call__(self, trainer: Trainer) -> MonitorReport:
        model = trainer.ema.module
        gen = torch.Generator().manual_seed(self.cfg.seed)
        with torch.no_grad():
            fakes = [model.sample(c.expand(n, -1), gen) for c, n in zip(self.conditions, self.sizes)]
        spread, unique = _stats(fakes, self.cfg.duplicate_distance)
        ratio = spread / max(self.data_diversity, 1e-6)
        uniq_ratio = unique / max(self.data_uniqueness, 1e-6)
        metrics = {"diversity_ratio": ratio, "uniqueness": unique, "uniqueness_ratio": uniq_ratio}
        reasons = []
        if trainer.epoch >= self.cfg.warmup:
            if ratio < self.cfg.min_diversity_ratio:
                reasons.append(f"images of one condition differ {ratio:.2f} as much as real ones "
                               f"(< {self.cfg.min_diversity_ratio})")
            if uniq_ratio < self.cfg.min_uniqueness:
                reasons.append(f"uniqueness {unique:.2f} is {uniq_ratio:.2f} of the real images' "
                               f"(< {self.cfg.min_uniqueness})")
        return MonitorReport(metrics=metrics, healthy=not reasons, reason="; ".join(reasons),
                             judged=trainer.epoch >= self.cfg.warmup)
