"""The ``generator`` block of a campaign: which generator proposes candidates, and that generator's options.

``generator.name`` picks one of :data:`GENERATOR_NAMES`; the block is a discriminated union on it, so it holds
the chosen generator's options and no other's: ``generator.diffusion`` beside ``name: substitution`` is an
error, not silently ignored. A missing ``name`` means ``substitution``. ``--set generator.name=...`` on a file
switches generators and drops the file's options of the others (:func:`only_own_options`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, TypeAdapter, field_validator, model_validator

from conf.base import Strict

GENERATOR_NAMES = ("substitution", "random", "diffusion", "gan")
"""Every generator, by its ``generator.name``."""


class SubstitutionOptions(Strict):
    threshold: float = Field(1e-4, gt=0, lt=1, description="Lowest substitution probability kept.")
    min_threshold: float = Field(1e-6, gt=0, lt=1, description="When fewer untried proposals than a round asks "
                                 "for remain, the threshold is lowered tenfold at a time down to this (the round "
                                 "summary says so); equal to threshold: never widen.")
    probability_exponent: float = Field(0.5, ge=0, description="Sampling weight ~ probability**exponent.")
    arm: Literal["composition", "template"] = Field(
        "composition", description="What feedback weighs: the proposal's composition (every polymorph of a "
        "formula shares its weight, so a composition near the hull gets more of its remaining proposals) or its "
        "template (one proposal per template and ion set: little left for a weight to move).")

    @model_validator(mode="after")
    def _widen_downwards(self) -> SubstitutionOptions:
        if self.min_threshold > self.threshold:
            raise ValueError(f"min_threshold ({self.min_threshold}) must not exceed threshold ({self.threshold})")
        return self


class RandomOptions(Strict):
    max_attempts: int = Field(60, ge=1, description="pyxtal attempts per structure before giving up.")
    volume_factor: float = Field(1.1, gt=0.5, lt=3.0, description="pyxtal volume factor.")


class CheckpointSource(Strict):
    """Where a generator's checkpoint comes from: the one shipped with matloop, a file, or a URL downloaded once
    into the cache."""

    checkpoint: str | None = Field("builtin", description="builtin (the checkpoint shipped with matloop, see "
                                   "models/weights/MODEL_CARD.md), a checkpoint file, or an http(s):// or file:// URL "
                                   "(downloaded once into $MATLOOP_CACHE or ~/.cache/matloop and checked against "
                                   "checkpoint_sha256).")
    checkpoint_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the file a "
                                          "checkpoint URL must deliver (required with a URL).")

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _path_as_text(cls, v: object) -> object:
        return str(v) if isinstance(v, Path) else v

    @model_validator(mode="after")
    def _url_needs_hash(self) -> CheckpointSource:
        if self.checkpoint is not None and "://" in self.checkpoint:
            scheme = self.checkpoint.split("://", 1)[0].lower()
            if scheme not in ("http", "https", "file"):
                raise ValueError(f"checkpoint URL scheme {scheme!r} is not supported; allowed: http, https, file")
            if self.checkpoint_sha256 is None:
                raise ValueError(f"checkpoint {self.checkpoint} is a URL: set checkpoint_sha256 (the file's sha256) "
                                 "so what is downloaded can be checked")
        return self


class DiffusionOptions(CheckpointSource):
    """The diffusion generator: a trained checkpoint (``matloop train --generator diffusion``) and sampling."""

    steps: int = Field(1000, ge=1, description="Reverse steps: 1000 default, <= 200 is the fast setting.")
    corrector_steps: int = Field(1, ge=0)
    step_lr: float = Field(1e-5, gt=0)
    guidance_scale: float = Field(1.0, ge=0, description="Classifier-free guidance (0 unconditional, 1 "
                                  "conditional, > 1 stronger).")
    oversample: float = Field(2.0, ge=1, description="Draw this many times n and keep n by arm weight.")


class GANOptions(CheckpointSource):
    """The GAN generator: a trained checkpoint (``matloop train --generator gan``)."""

    oversample: float = Field(2.0, ge=1, description="Draw this many times n and keep n by arm weight.")
    batch_size: int = Field(1024, ge=1, description="Crystals per generator pass.")


class _Common(Strict):
    """What every generator takes."""

    n_per_round: int = Field(16, ge=1, le=100_000, description="Proposals per round.")
    property_guidance: float = Field(
        1.0, ge=0, description="Predictor guidance towards targets an MLIP cannot give (target.properties band_gap, "
        "with evaluate.predictor): every generator weights what it keeps by P(meets the targets) ** this scale, the "
        "predictor's probability with the campaign's correction from its DFT/lab values (0: unguided; 1: in "
        "proportion; larger: sharper). Works with any generator; a checkpoint conditioned on the property is "
        "guided on top.")


class SubstitutionGeneratorConfig(_Common):
    """Data-mined ion substitution (pymatgen's SubstitutionPredictor) on the campaign's templates."""

    name: Literal["substitution"] = "substitution"
    substitution: SubstitutionOptions = SubstitutionOptions()

    @property
    def options(self) -> SubstitutionOptions:
        return self.substitution


class RandomGeneratorConfig(_Common):
    """Random symmetric structures (pyxtal) of the target's compositions."""

    name: Literal["random"]
    random: RandomOptions = RandomOptions()

    @property
    def options(self) -> RandomOptions:
        return self.random


class _FromCheckpoint(_Common):
    """A generator that samples from a trained checkpoint: the checkpoint must be given."""

    @model_validator(mode="after")
    def _has_checkpoint(self) -> _FromCheckpoint:
        if self.options.checkpoint is None:
            raise ValueError(f"generator.name={self.name} needs generator.{self.name}.checkpoint (builtin, a file or "
                             f"a URL; train one with `matloop train --generator {self.name}`)")
        return self


class DiffusionGeneratorConfig(_FromCheckpoint):
    """The diffusion model (a matloop checkpoint)."""

    name: Literal["diffusion"]
    diffusion: DiffusionOptions = DiffusionOptions()

    @property
    def options(self) -> DiffusionOptions:
        return self.diffusion


class GANGeneratorConfig(_FromCheckpoint):
    """The conditional GAN (a matloop checkpoint)."""

    name: Literal["gan"]
    gan: GANOptions = GANOptions()

    @property
    def options(self) -> GANOptions:
        return self.gan


def _tag(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("name", "substitution")
    return getattr(value, "name", None)


def _no_foreign_options(value: Any) -> Any:
    if isinstance(value, dict):
        name = value.get("name", "substitution")
        foreign = [k for k in GENERATOR_NAMES if k in value and k != name]
        if foreign and name in GENERATOR_NAMES:
            raise ValueError(f"generator.{foreign[0]} is given but generator.name is {name!r}: a generator's "
                             f"options apply only to it (set generator.name={foreign[0]}, or remove them)")
    return value


GeneratorConfig = Annotated[
    Union[Annotated[SubstitutionGeneratorConfig, Tag("substitution")], Annotated[RandomGeneratorConfig, Tag("random")],
          Annotated[DiffusionGeneratorConfig, Tag("diffusion")], Annotated[GANGeneratorConfig, Tag("gan")]],
    Discriminator(_tag, custom_error_type="generator_name",
                  custom_error_message=f"generator.name must be one of {', '.join(GENERATOR_NAMES)}"),
    BeforeValidator(_no_foreign_options),
]
"""The generator block: one of the four generator configs, chosen by ``name``."""

CHECKPOINT_GENERATORS = ("diffusion", "gan")
"""The generators that sample from a trained checkpoint."""

_ADAPTER: TypeAdapter = TypeAdapter(GeneratorConfig)


def generator_config(**data: Any) -> SubstitutionGeneratorConfig | RandomGeneratorConfig | DiffusionGeneratorConfig \
        | GANGeneratorConfig:
    """A validated generator block from keyword arguments (``generator_config(name="gan", gan={...})``)."""
    return _ADAPTER.validate_python(data)


def only_own_options(block: dict[str, Any], name: str) -> dict[str, Any]:
    """``block`` without the option blocks of generators other than ``name`` (used when ``name`` is switched
    from outside the file, e.g. ``--set generator.name=gan``)."""
    return {k: v for k, v in block.items() if k not in GENERATOR_NAMES or k == name}
