"""The base of every config block (:class:`models.strict.Strict`, shared with model configs and typed records)."""

from __future__ import annotations

from models.strict import Strict

__all__ = ["Strict"]
