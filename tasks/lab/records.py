"""Lab result files: reading (CSV or JSON), strict row validation and unit conversion. Pure functions.

A row names a candidate (``candidate``: its structure hash or store id; or ``cif``: CIF text or a ``.cif``
file beside the lab file; or ``formula``), a ``property``, ``value``, ``unit``, optional ``uncertainty``
(same unit), ``sample_id``, ``date`` (ISO) and free-text ``notes``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from conf.base import Strict
from tasks.errors import MatloopError

# property -> (canonical unit, {accepted unit: factor to canonical})
UNITS: dict[str, tuple[str, dict[str, float]]] = {
    "band_gap": ("eV", {"eV": 1.0, "meV": 1e-3}),
    "formation_energy_per_atom": ("eV/atom", {"eV/atom": 1.0, "meV/atom": 1e-3, "kJ/mol": 1 / 96.485332}),
    "e_above_hull": ("eV/atom", {"eV/atom": 1.0, "meV/atom": 1e-3, "kJ/mol": 1 / 96.485332}),
    "ionic_conductivity": ("S/cm", {"S/cm": 1.0, "mS/cm": 1e-3, "S/m": 1e-2}),
    "synthesized": ("1", {"1": 1.0, "": 1.0}),  # 1 = the phase was made, 0 = attempted and not obtained
}
FIELDS = ("candidate", "cif", "formula", "property", "value", "unit", "uncertainty", "sample_id", "date", "notes")


class LabInputError(MatloopError):
    """A lab file cannot be ingested: unreadable, outside the allowed folder, or invalid rows (all listed)."""

    def __init__(self, message: str, errors: list[tuple[int, str]] | None = None) -> None:
        self.errors = errors or []
        lines = "".join(f"\n  line {n}: {reason}" for n, reason in self.errors[:50])
        more = f"\n  ... and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
        super().__init__(message + lines + more)


class LabRecord(Strict):
    """One validated row, value and uncertainty already in the property's canonical unit."""

    candidate: str | None = None
    cif: str | None = None
    formula: str | None = None
    property: str = Field(description=f"One of: {', '.join(UNITS)}.")
    value: float = Field(description="In the canonical unit of the property after conversion.")
    unit: str
    raw_value: float
    raw_unit: str
    uncertainty: float | None = Field(None, ge=0)
    sample_id: str = Field(min_length=1, max_length=100)
    date: date
    notes: str = ""

    @field_validator("candidate", "cif", "formula", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _one_identifier(self) -> LabRecord:
        given = [k for k in ("candidate", "cif", "formula") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"name the candidate by exactly one of candidate, cif, formula (got {given or 'none'})")
        return self

    def key(self) -> str:
        """What makes a measurement the same one when a file is ingested again."""
        ident = self.candidate or self.formula or hashlib.sha256((self.cif or "").encode()).hexdigest()
        payload = json.dumps([ident, self.property, self.raw_value, self.raw_unit, self.sample_id,
                              self.date.isoformat()])
        return hashlib.sha256(payload.encode()).hexdigest()[:24]


def parse_row(raw: dict[str, Any]) -> LabRecord:
    """Validate one raw row (strings from CSV or JSON values) and convert its unit; raises ValueError."""
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; allowed: {', '.join(FIELDS)}")
    prop = (raw.get("property") or "").strip()
    if prop not in UNITS:
        raise ValueError(f"property {prop!r} is not one of: {', '.join(UNITS)}")
    canonical, factors = UNITS[prop]
    unit = (raw.get("unit") or "").strip()
    if unit not in factors:
        raise ValueError(f"unit {unit!r} for {prop}; allowed: {', '.join(repr(u) for u in factors)}")
    value = _number(raw.get("value"), "value")
    unc = raw.get("uncertainty")
    unc = None if unc in (None, "") else _number(unc, "uncertainty")
    if prop == "synthesized" and value not in (0.0, 1.0):
        raise ValueError(f"synthesized must be 0 or 1, got {value}")
    try:
        return LabRecord(candidate=raw.get("candidate"), cif=raw.get("cif"), formula=raw.get("formula"),
                         property=prop, value=value * factors[unit], unit=canonical, raw_value=value, raw_unit=unit,
                         uncertainty=None if unc is None else unc * factors[unit],
                         sample_id=str(raw.get("sample_id") or "").strip(), date=raw.get("date"),
                         notes=raw.get("notes") or "")
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors())) from None


def _number(x: Any, name: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {x!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return v


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, raw row)`` of a CSV (line 1 is the header) or JSON file (a list of objects)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                return [(reader.line_num, dict(row)) for row in reader]
        if suffix == ".json":
            data = json.loads(path.read_text())
            if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
                raise LabInputError(f"{path}: a JSON lab file is a list of objects")
            return [(i + 1, row) for i, row in enumerate(data)]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise LabInputError(f"cannot read {path}: {exc}") from exc
    raise LabInputError(f"{path}: unsupported lab file type {suffix!r}; allowed: .csv, .json")


def check_inside(path: Path, allowed: Path) -> Path:
    """``path`` resolved, refused unless it lies inside ``allowed`` (symlinks resolved first)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(allowed.resolve()):
        raise LabInputError(f"{path} is outside the allowed lab input folder {allowed} (lab.input_dir)")
    if not resolved.is_file():
        raise LabInputError(f"{path} does not exist")
    return resolved
