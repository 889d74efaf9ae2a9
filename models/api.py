"""Build, load and sample the crystal generative models (diffusion, GAN) in terms of pymatgen structures and
element symbols."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pymatgen.core import Element, Structure

from models.checkpoint import load_checkpoint
from models.crystal import MAX_Z, CrystalBatch, Normalizer, structures_from_batch
from models.data import CrystalDataset
from models.diffusion import Condition, CrystalDiffusion, DiffusionConfig
from models.gan import CrystalGAN, GANConfig
from models.sampler import SamplerConfig, sample

Target = tuple[float | None, float | None]  # (min, max) in physical units; equal for a value target
ModelConfig = DiffusionConfig | GANConfig
GenerativeModel = CrystalDiffusion | CrystalGAN


class BatchSampler(Protocol):
    """One batch of crystals with the given atom counts from a model (``cfg``: the diffusion sampler's settings;
    a one-pass generator ignores it)."""

    def __call__(self, model: Any, num_atoms: torch.Tensor, generator: torch.Generator, cfg: SamplerConfig | None,
                 cond: Condition | None, allowed: torch.Tensor | None) -> CrystalBatch: ...


def _sample_diffusion(model: CrystalDiffusion, num_atoms: torch.Tensor, generator: torch.Generator,
                      cfg: SamplerConfig | None, cond: Condition | None, allowed: torch.Tensor | None) -> CrystalBatch:
    return sample(model, num_atoms, cfg or SamplerConfig(), generator, cond, allowed)


def _sample_gan(model: CrystalGAN, num_atoms: torch.Tensor, generator: torch.Generator, cfg: SamplerConfig | None,
                cond: Condition | None, allowed: torch.Tensor | None) -> CrystalBatch:
    return model.sample(num_atoms, generator, cond, allowed)


@dataclass(frozen=True)
class ModelKind:
    """A model family: its config class, its module (built as ``Model(config, normalizer)``) and its sampler."""

    config: type[ModelConfig]
    model: type[GenerativeModel]
    sample: BatchSampler


# checkpoint "kind" -> family
MODEL_KINDS: dict[str, ModelKind] = {
    "diffusion": ModelKind(DiffusionConfig, CrystalDiffusion, _sample_diffusion),
    "gan": ModelKind(GANConfig, CrystalGAN, _sample_gan)}
KIND_OF_CONFIG: dict[type, str] = {family.config: kind for kind, family in MODEL_KINDS.items()}
KIND_OF_MODEL: dict[type, str] = {family.model: kind for kind, family in MODEL_KINDS.items()}


def kind_of(cfg: ModelConfig) -> str:
    return KIND_OF_CONFIG[type(cfg)]


def build_model(cfg: ModelConfig, normalizer: Normalizer, seed: int) -> GenerativeModel:
    """A fresh model whose initial weights come from ``seed`` alone (the process's global RNG is left as it
    was), so a training run is reproducible from its config."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODEL_KINDS[kind_of(cfg)].model(cfg, normalizer)


def training_meta(cfg: ModelConfig, data: CrystalDataset) -> dict[str, Any]:
    return {"kind": kind_of(cfg), "model_config": cfg.model_dump(mode="json"),
            "normalizer": data.normalizer.as_dict(), "num_atoms_hist": data.num_atoms_histogram(),
            "data_digest": data.digest()}


def load_model(path: Path, use_ema: bool = True, kind: str | None = None) -> tuple[GenerativeModel, dict[str, Any]]:
    """Model (EMA weights by default) and the checkpoint dict it came from; ``kind`` (one of
    :data:`MODEL_KINDS`) insists on a model family."""
    ckpt = load_checkpoint(path)
    found = ckpt.get("kind")
    if found not in MODEL_KINDS:
        raise ValueError(f"{path} holds a {found!r} model; known kinds: {', '.join(MODEL_KINDS)}")
    if kind is not None and found != kind:
        raise ValueError(f"{path} holds a {found!r} model, not a {kind} model")
    family = MODEL_KINDS[found]
    model = family.model(family.config.model_validate(ckpt["model_config"]), Normalizer.from_dict(ckpt["normalizer"]))
    model.load_state_dict(ckpt["ema_state_dict" if use_ema else "state_dict"])
    model.eval()
    return model, ckpt


def load_diffusion(path: Path, use_ema: bool = True) -> tuple[CrystalDiffusion, dict[str, Any]]:
    return load_model(path, use_ema, kind="diffusion")


def allowed_mask(elements: Sequence[str] | None) -> torch.Tensor | None:
    if elements is None:
        return None
    mask = torch.zeros(MAX_Z + 1, dtype=torch.bool)
    for el in elements:
        mask[Element(el).Z] = True
    return mask


def draw_num_atoms(hist: Sequence[float], n: int, max_atoms: int, generator: torch.Generator) -> torch.Tensor:
    """Atom counts drawn from the training distribution, restricted to at most ``max_atoms``."""
    p = torch.tensor(hist[: max_atoms + 1], dtype=torch.float64)
    if p.sum() <= 0:
        raise ValueError(f"the training data has no crystal with at most {max_atoms} atoms")
    return torch.multinomial(p / p.sum(), n, replacement=True, generator=generator)


def build_condition(model: GenerativeModel, n: int, elements: Sequence[str] | None,
                    targets: Mapping[str, Target], generator: torch.Generator) -> Condition | None:
    """Normalised property values drawn uniformly inside each target range (open ends: 3 std from the
    training mean) and the element multi-hot of the requested chemical system."""
    cfg, norm = model.cfg, model.normalizer
    unknown = set(targets) - set(cfg.properties)
    if unknown:
        raise ValueError(f"the model is not conditioned on {sorted(unknown)} (it knows {list(cfg.properties)})")
    props = given = None
    if cfg.properties:
        props = torch.zeros(n, len(cfg.properties), dtype=torch.float32)
        given = torch.zeros(n, len(cfg.properties), dtype=torch.bool)
        for j, name in enumerate(cfg.properties):
            if name not in targets:
                continue
            lo, hi = targets[name]
            mean, std = norm.prop_mean[j], norm.prop_std[j]
            lo = mean - 3 * std if lo is None else lo
            hi = mean + 3 * std if hi is None else hi
            values = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
            props[:, j] = ((values - mean) / std).float()
            given[:, j] = True
    hot = None
    if cfg.condition_on_elements and elements is not None:
        hot = allowed_mask(elements).float().expand(n, -1).clone()
    if props is None and hot is None:
        return None
    return Condition(props, given, hot)


def sample_batch(model: GenerativeModel, num_atoms: torch.Tensor, generator: torch.Generator,
                 cfg: SamplerConfig | None = None, cond: Condition | None = None,
                 allowed: torch.Tensor | None = None) -> CrystalBatch:
    """One batch of crystals: the diffusion sampler (``cfg``, default 1000 steps) or one GAN pass."""
    return MODEL_KINDS[KIND_OF_MODEL[type(model)]].sample(model, num_atoms, generator, cfg, cond, allowed)


def sample_structures(model: GenerativeModel, ckpt: Mapping[str, Any], n: int, seed: int,
                      cfg: SamplerConfig | None = None, elements: Sequence[str] | None = None,
                      targets: Mapping[str, Target] | None = None, max_atoms: int = 20,
                      batch_size: int = 256) -> list[Structure]:
    """``n`` crystals; every species lies in ``elements`` when given (``cfg``: diffusion sampler settings)."""
    generator = torch.Generator().manual_seed(seed)
    counts = draw_num_atoms(ckpt["num_atoms_hist"], n, max_atoms, generator)
    out: list[Structure] = []
    for start in range(0, n, batch_size):
        part = counts[start:start + batch_size]
        cond = build_condition(model, len(part), elements, targets or {}, generator)
        out += structures_from_batch(sample_batch(model, part, generator, cfg, cond, allowed_mask(elements)))
    return out


def property_matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> np.ndarray:
    values = [[float(r.get(k, np.nan)) for k in names] for r in rows]
    return np.array(values, dtype=float).reshape(len(rows), len(names))
