"""The base of every typed configuration and boundary record: unknown keys are errors, instances are immutable.

Defined at the bottom layer (models) so model configs, ``conf`` blocks and ``tasks`` records share one base;
``conf.base.Strict`` is this class."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base for every config block and typed record: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
