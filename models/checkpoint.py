"""Checkpoints: plain dicts of tensors and primitives, saved atomically, loaded with ``weights_only=True``.

Loading never unpickles arbitrary objects (mace's import sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD for the
whole process, so ``weights_only=True`` is passed explicitly). Each checkpoint carries the model config,
the normalisation statistics, the atom-count distribution, training state, and a content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

FORMAT = "matloop-checkpoint-1"
WEIGHTS = Path(__file__).parent / "weights"  # the checkpoints that ship with matloop (see MODEL_CARD.md there)
BUILTIN_GENERATORS = ("diffusion", "gan")
BUILTIN_KINDS = (*BUILTIN_GENERATORS, "predictor")  # predictor: the band-gap property predictor
# shipped alternatives to a family's default weights (models/weights/<kind>-<variant>.pt, see MODEL_CARD.md)
BUILTIN_VARIANTS = {"diffusion": ("eform", "gap")}
_DROPPED_ON_RELEASE = ("optimizer", "rng_state", "state_dict")


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
    try:
        data = torch.load(Path(path), map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:  # not a torch file, truncated, foreign objects
        raise ValueError(f"{path} is not a readable matloop checkpoint ({type(exc).__name__}: refused or unreadable "
                         "under weights_only loading)") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a matloop checkpoint (format {FORMAT})")
    return data


def release_payload(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``ckpt`` as it ships: the EMA weights only (also as the training weights, so fine-tuning starts from them),
    no optimizer or RNG state, data files named without the trainer's local folders. The hash is unchanged (it is
    the EMA weights' and the model's)."""
    out = {k: v for k, v in ckpt.items() if k not in _DROPPED_ON_RELEASE and k != "format"}
    out["state_dict"] = ckpt["ema_state_dict"]  # the same tensors: torch.save stores them once
    out["data_paths"] = [Path(p).name for p in ckpt.get("data_paths", [])]
    out["history"] = list(ckpt.get("history", []))[-1:]
    out["released_from"] = {"epoch": ckpt.get("epoch"), "step": ckpt.get("step")}
    return out


def release_checkpoint(src: Path, dst: Path) -> Path:
    """Write the release form of checkpoint ``src`` to ``dst`` (see :func:`release_payload`)."""
    return save_checkpoint(dst, release_payload(load_checkpoint(src)))


def builtin_checkpoint(kind: str, variant: str = "") -> Path:
    """The shipped checkpoint of generator family ``kind`` (one of :data:`BUILTIN_KINDS`), or its ``variant``
    (one of :data:`BUILTIN_VARIANTS`; ``checkpoint: builtin:<variant>`` in a campaign config)."""
    if kind not in BUILTIN_KINDS:
        raise ValueError(f"no builtin checkpoint for {kind!r}; builtin ones: {', '.join(BUILTIN_KINDS)}")
    if variant and variant not in BUILTIN_VARIANTS.get(kind, ()):
        allowed = ", ".join(f"builtin:{v}" for v in BUILTIN_VARIANTS.get(kind, ())) or "none"
        raise ValueError(f"no builtin {kind} checkpoint variant {variant!r}; variants: {allowed}")
    path = WEIGHTS / (f"{kind}-{variant}.pt" if variant else f"{kind}.pt")
    if not path.is_file():
        raise FileNotFoundError(f"the builtin {kind} checkpoint {path.name} is missing from this installation "
                                f"({path})")
    return path
