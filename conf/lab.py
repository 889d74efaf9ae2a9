"""Typed configuration of lab-result ingestion (``lab:`` in a campaign config)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from conf.base import Strict


class LabConfig(Strict):
    input_dir: Path | None = Field(None, description="The only folder lab files are read from (and CIF files "
                                   "they name); default: <output_dir>/lab.")
    miss_score: float = Field(0.0, ge=0, le=1, description="Feedback score of a candidate whose measured "
                              "target property misses its target range (a hit scores 1).")

    def allowed_dir(self, output_dir: Path) -> Path:
        return (self.input_dir or Path(output_dir) / "lab").resolve()
