"""Checkpoints: plain dicts of tensors and primitives, saved atomically, loaded with ``weights_only=True``.

Loading never unpickles arbitrary objects (mace's import sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD for the
whole process, so ``weights_only=True`` is passed explicitly). Each checkpoint carries the model config,
the normalisation statistics, the atom-count distribution, training state, and a content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "matloop-checkpoint-1"


def state_hash(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """sha256 over the weights (in key order) and the JSON of ``meta``: the checkpoint's identity."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format tag) to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and check its format tag."""
    data = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a matloop checkpoint (format {FORMAT})")
    return data
