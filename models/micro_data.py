"""Images and their process conditions as training batches for the microstructure generators.

Conditions are standardised with the training set's mean and spread (kept in the checkpoint, so a sampler asks
for real process values); images become {-1, +1} floats; each batch is rolled by a random periodic shift (the
images are periodic, so every shift is as real as the original)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


class ConditionScaler:
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(list(mean), dtype=torch.float32)
        self.std = torch.tensor(list(std), dtype=torch.float32).clamp(min=1e-8)

    @classmethod
    def fit(cls, conditions: np.ndarray) -> ConditionScaler:
        c = np.asarray(conditions, dtype=np.float64)
        std = c.std(axis=0)
        return cls(c.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist())  # a constant column: centred only

    def __call__(self, conditions) -> torch.Tensor:
        return (torch.as_tensor(np.asarray(conditions, dtype=np.float32)) - self.mean) / self.std

    def state(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


class ImageDataset:
    """``images`` (n, H, W) bool, ``conditions`` (n, k) raw process values."""

    def __init__(self, images: np.ndarray, conditions: np.ndarray, scaler: ConditionScaler | None = None,
                 augment: bool = True) -> None:
        if len(images) != len(conditions):
            raise ValueError(f"{len(images)} images but {len(conditions)} condition rows")
        self.scaler = scaler or ConditionScaler.fit(conditions)
        self.x = torch.as_tensor(np.asarray(images, dtype=bool)).float()[:, None] * 2 - 1
        self.c = self.scaler(conditions)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, indices: Sequence[int], generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        x = self.x[list(indices)]
        if self.augment:
            dy, dx = (int(v) for v in torch.randint(0, x.shape[-1], (2,), generator=generator))
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        return x, self.c[list(indices)]

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        order = torch.randperm(len(self), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start:start + batch_size], generator)
