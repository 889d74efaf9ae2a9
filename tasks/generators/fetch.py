"""Checkpoint files behind a generator's ``checkpoint`` setting: ``builtin`` (shipped in the package), a local
path, or a URL fetched once.

A URL (http, https, file) is downloaded into ``$MATLOOP_CACHE/checkpoints`` (default ``~/.cache/matloop``) under
its sha256, checked against ``checkpoint_sha256`` and moved into place atomically; later campaigns find it there
and never touch the network (as MACE's foundation weights are cached).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

from tasks.errors import GeneratorError


def cache_dir() -> Path:
    return Path(os.environ.get("MATLOOP_CACHE") or Path.home() / ".cache" / "matloop") / "checkpoints"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_checkpoint(ref: str | Path, sha256: str | None = None, kind: str | None = None) -> Path:
    """The local file of checkpoint ``ref``: ``builtin`` (the shipped checkpoint of generator family ``kind``) or
    ``builtin:<variant>`` (a shipped alternative, e.g. ``builtin:eform``), a
    path, or a URL fetched once and checked against ``sha256``."""
    ref = str(ref)
    if ref == "builtin" or ref.startswith("builtin:"):
        from models.checkpoint import builtin_checkpoint

        try:
            return builtin_checkpoint(str(kind), ref.partition(":")[2])
        except (ValueError, FileNotFoundError) as exc:
            raise GeneratorError(str(exc)) from exc
    if "://" not in ref:
        return Path(ref)
    if sha256 is None:
        raise GeneratorError(f"checkpoint {ref} is a URL: its sha256 is needed to check the download")
    target = cache_dir() / f"{sha256}.pt"
    if target.is_file() and _sha256(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(ref, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
        got = _sha256(tmp)
        if got != sha256:
            raise GeneratorError(f"checkpoint {ref}: downloaded file has sha256 {got}, expected {sha256}")
        os.replace(tmp, target)
    except OSError as exc:
        raise GeneratorError(f"checkpoint {ref} could not be fetched: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target
