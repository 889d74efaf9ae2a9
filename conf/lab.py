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

    def allowed_dir(self, output_dir: Path, campaign_dir: Path | None = None) -> Path:
        """The lab input folder, absolute. Relative paths are the campaign's: with ``campaign_dir`` (absolute,
        ``<output_dir>/<id>``) they resolve from where the campaign was started, not from the current folder."""
        output_dir = Path(output_dir)
        start = None
        if campaign_dir is not None:
            start = Path(campaign_dir).parent  # the absolute output_dir
            if not output_dir.is_absolute():  # walk back up the relative output_dir to the starting folder
                for part in reversed(output_dir.parts):
                    if part == "..":
                        start = None  # cannot be undone: fall back to the current folder
                        break
                    start = start if part == "." else start.parent
        if self.input_dir is not None:
            return (self.input_dir if self.input_dir.is_absolute() or start is None else start / self.input_dir
                    ).resolve()
        return (Path(campaign_dir).parent / "lab" if campaign_dir is not None else output_dir / "lab").resolve()
