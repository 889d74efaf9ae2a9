"""MLIP backends: ``mace`` | ``chgnet`` | ``auto`` resolved to a loadable spec with a recorded identity.

Resolution happens once per campaign (weights downloaded or located, hash taken); relaxation workers then
load exactly that spec. ``auto`` takes MACE when its weights are available (a local file, the download
cache, or a successful download) and otherwise CHGNet, whose weights ship inside its wheel; the reason for
a fallback is part of the spec.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import Field

from conf.base import Strict
from conf.schema import RelaxConfig
from tasks.errors import MLIPUnavailableError

log = logging.getLogger("matloop.mlip")

BACKENDS = ("mace", "chgnet", "auto")


class MLIPSpec(Strict):
    """A resolved MLIP: what to load and how to name it."""

    backend: Literal["mace", "chgnet"]
    model: str = Field(description="Model file path (MACE) or model version (CHGNet).")
    device: str
    identity: str = Field(description="backend:name:weights-hash, recorded with every result.")
    requested: str = Field(description="The backend the config asked for (mace | chgnet | auto).")
    fallback_reason: str = Field("", description="Why 'auto' did not use MACE.")


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def _looks_like_path(model: str) -> bool:
    return "/" in model or model.endswith((".model", ".pt", ".pth"))


def resolve_mace(model: str, device: str, requested: str = "mace") -> MLIPSpec:
    """A local ``.model`` file, or a MACE-MP foundation model name (downloaded once, then cached)."""
    if _looks_like_path(model):
        path = Path(model).expanduser()
        if not path.is_file():
            raise MLIPUnavailableError("mace", model, f"no model file at {path}")
        return MLIPSpec(backend="mace", model=str(path.resolve()), device=device, requested=requested,
                        identity=f"mace:{path.name}:{_sha(path)}")
    try:
        from mace.calculators.foundations_models import download_mace_mp_checkpoint, mace_mp_names
    except ImportError as exc:
        raise MLIPUnavailableError("mace", model, f"mace-torch is not installed ({exc})") from exc
    if model not in mace_mp_names:
        names = ", ".join(n for n in mace_mp_names if n)
        raise MLIPUnavailableError("mace", model, f"not a file and not a MACE-MP foundation model ({names})")
    try:
        path = Path(download_mace_mp_checkpoint(model))
    except Exception as exc:  # urllib/HTTP/OS errors: no network or no such release
        raise MLIPUnavailableError("mace", model, f"download failed and no cached copy ({exc})") from exc
    return MLIPSpec(backend="mace", model=str(path), device=device, requested=requested,
                    identity=f"mace-mp:{model}:{_sha(path)}")


def resolve_chgnet(version: str, device: str, requested: str = "chgnet", fallback_reason: str = "") -> MLIPSpec:
    import chgnet

    return MLIPSpec(backend="chgnet", model=version, device=device, requested=requested,
                    fallback_reason=fallback_reason, identity=f"chgnet:{version}@{chgnet.__version__}")


FAILURE_MEMORY_S = 24 * 3600  # how long `auto` remembers that a MACE foundation model could not be fetched


def _failure_file(model: str) -> Path:
    root = Path(os.environ.get("MATLOOP_CACHE") or Path.home() / ".cache" / "matloop")
    return root / "mlip" / f"mace-unavailable-{hashlib.sha256(model.encode()).hexdigest()[:12]}.json"


def _remember_failure(model: str, reason: str) -> None:
    path = _failure_file(model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"model": model, "reason": reason, "at": time.time()}))
    except OSError:  # a read-only home: we will simply try again next time
        pass


def _recent_failure(model: str) -> str | None:
    """The reason the last attempt to fetch ``model`` failed, if that was less than FAILURE_MEMORY_S ago."""
    try:
        record = json.loads(_failure_file(model).read_text())
    except (OSError, ValueError):
        return None
    return record["reason"] if time.time() - record.get("at", 0) < FAILURE_MEMORY_S else None


def resolve_mlip(cfg: RelaxConfig) -> MLIPSpec:
    """Resolve ``cfg.backend`` (one of :data:`BACKENDS`) to a spec.

    Raises
    ------
    MLIPUnavailableError
        ``mace`` requested explicitly and its weights cannot be found or downloaded.
    """
    if cfg.backend == "mace":
        return resolve_mace(cfg.mace_model, cfg.device)
    if cfg.backend == "chgnet":
        return resolve_chgnet(cfg.chgnet_model, cfg.device)
    if cfg.backend == "auto":
        known = _recent_failure(cfg.mace_model)
        if known is not None:  # an offline machine: do not try the download again in every campaign
            return resolve_chgnet(cfg.chgnet_model, cfg.device, requested="auto",
                                  fallback_reason=f"{known} (remembered; retried after {FAILURE_MEMORY_S // 3600} h "
                                                  f"or when {_failure_file(cfg.mace_model)} is removed)")
        try:
            return resolve_mace(cfg.mace_model, cfg.device, requested="auto")
        except MLIPUnavailableError as exc:
            log.warning("auto MLIP: falling back to CHGNet: %s", exc)
            if not _looks_like_path(cfg.mace_model):
                _remember_failure(cfg.mace_model, str(exc))
            return resolve_chgnet(cfg.chgnet_model, cfg.device, requested="auto", fallback_reason=str(exc))
    raise MLIPUnavailableError(cfg.backend, "", f"unknown backend; allowed: {', '.join(BACKENDS)}")


_loaded = threading.local()
_load_lock = threading.Lock()  # model loading (e3nn code generation, torch.load) is not thread-safe


def load_calculator(spec: MLIPSpec):
    """An ASE calculator for ``spec``, cached per thread (ASE calculators are not thread-safe): a worker
    process or thread loads a model once and keeps it."""
    cache = _loaded.__dict__.setdefault("calculators", {})
    if spec not in cache:
        from tasks.logs import quiet_stdout

        with _load_lock, quiet_stdout():  # model banners go to the campaign log
            cache[spec] = _new_calculator(spec)
    return cache[spec]


class _DtypeGate:
    """Torch's default dtype is process-wide, and MACE (float64) and CHGNet (float32) build their inputs with it.
    Threads computing with the same dtype run together; a thread that needs the other dtype waits until they are
    done (without this, a rerun that pre-relaxes with MACE in one thread while CHGNet polishes in another mixed
    dtypes and recorded the relaxation as an error)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._dtype = None  # the dtype of the threads inside, or of the last ones
        self._active = 0
        self._waiting: dict = {}
        self._exclusive = False  # a thread inside alone (loading a model)
        self._exclusive_waiting = 0

    def _may_enter(self, dtype, exclusive: bool = False) -> bool:
        """Fair between dtypes: while a thread of the other dtype waits, no new thread joins the ones inside, and
        when the gate empties the waiting dtype goes first (threads that re-enter step after step, as an
        optimizer's, would otherwise starve it). An exclusive thread enters an empty gate and holds it alone; while
        one waits, no other thread enters."""
        if self._exclusive:
            return False
        if exclusive:
            return self._active == 0
        if self._exclusive_waiting:
            return False
        others_wait = any(n for d, n in self._waiting.items() if d != dtype)
        if self._active == 0:
            return self._dtype != dtype or not others_wait
        return self._dtype == dtype and not others_wait

    @contextmanager
    def use(self, dtype, exclusive: bool = False) -> Iterator[None]:
        """Run the block under torch default ``dtype``; ``exclusive``: with no other thread inside (model loading:
        e3nn builds its modules with torch.fx tracing, which patches ``nn.Module.__call__`` process-wide, so a
        thread computing meanwhile fails with 'module is not installed as a submodule')."""
        import torch

        with self._cond:
            if exclusive:
                self._exclusive_waiting += 1
            else:
                self._waiting[dtype] = self._waiting.get(dtype, 0) + 1
            try:
                self._cond.wait_for(lambda: self._may_enter(dtype, exclusive))
            except BaseException:
                self._give_up(dtype, exclusive)
                raise
            if exclusive:
                self._exclusive_waiting -= 1
                self._exclusive = True
            else:
                self._waiting[dtype] -= 1
            if self._active == 0:
                self._dtype = dtype
                torch.set_default_dtype(dtype)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._exclusive = False if exclusive else self._exclusive
                self._cond.notify_all()

    def _give_up(self, dtype, exclusive: bool) -> None:
        if exclusive:
            self._exclusive_waiting -= 1
        else:
            self._waiting[dtype] -= 1
        self._cond.notify_all()  # a waiter that gave up may have held others back


_dtype_gate = _DtypeGate()


@contextmanager
def float32_models() -> Iterator[None]:
    """Run matloop's own torch models (generator sampling, fine-tuning) under float32 through the dtype gate: a
    campaign process that also computes with MACE (float64: the screen, threads runners) would otherwise hand
    them float64 defaults (a GAN failed with 'Index put requires the source and destination dtypes match')."""
    import torch

    with _dtype_gate.use(torch.float32):
        yield


def _pin_default_dtype(calc, dtype):
    """Run ``calc.calculate`` under torch default ``dtype`` (see :class:`_DtypeGate`), so MACE and CHGNet can
    live in one process, even in threads computing at the same time."""
    calculate = calc.calculate

    def pinned(*args, **kwargs):
        with _dtype_gate.use(dtype):
            return calculate(*args, **kwargs)

    calc.calculate = pinned
    return calc


def _new_calculator(spec: MLIPSpec):
    import torch

    if spec.backend == "mace":
        from mace.calculators import MACECalculator

        with _dtype_gate.use(torch.float64, exclusive=True):  # no thread computes while e3nn traces
            calc = MACECalculator(model_paths=spec.model, device=spec.device, default_dtype="float64")
        return _pin_default_dtype(calc, torch.float64)
    if spec.backend == "chgnet":
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        with _dtype_gate.use(torch.float32, exclusive=True):
            model = CHGNet.load(model_name=spec.model, use_device=spec.device, verbose=False)
            calc = CHGNetCalculator(model=model, use_device=spec.device)
        return _pin_default_dtype(calc, torch.float32)
    raise MLIPUnavailableError(spec.backend, spec.model, "unknown backend; allowed: mace, chgnet")
