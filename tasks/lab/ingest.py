"""Ingest a lab file into a campaign: validate every row, match each to a candidate, write all or nothing.

Candidates are matched by structure hash or store id, by CIF (pymatgen ``StructureMatcher`` with the
campaign's tolerances, against generated and relaxed structures of the same reduced formula) or by reduced
formula (only when exactly one candidate has it).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from prefect import task
from pydantic import BaseModel, Field
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Structure

from conf.schema import CampaignConfig
from tasks.candidate import structure_from_json
from tasks.lab.records import FIELDS, LabInputError, LabRecord, check_inside, parse_row, read_rows


class IngestReport(BaseModel):
    file: str
    rows: int = Field(description="Rows in the file.")
    written: int = Field(description="New measurements stored (re-ingested rows are not written again).")
    rejected: list[tuple[int, str]] = Field(default_factory=list, description="(line, reason) of invalid rows.")
    reject_file: str | None = None


class CandidateIndex:
    """The campaign's candidates for matching lab rows."""

    def __init__(self, rows, cfg: CampaignConfig) -> None:
        self.by_hash = {r["hash"]: r for r in rows}
        self.by_id = {str(r["id"]): r["hash"] for r in rows}
        self.by_formula: dict[str, list[str]] = {}
        for r in rows:
            self.by_formula.setdefault(Composition(r["formula"]).reduced_formula, []).append(r["hash"])
        m = cfg.filter.matcher
        self.matcher = StructureMatcher(ltol=m.ltol, stol=m.stol, angle_tol=m.angle_tol)

    def match(self, rec: LabRecord, base: Path, allowed: Path) -> str:
        if rec.candidate:
            key = rec.candidate.strip()
            if key in self.by_hash:
                return key
            if key in self.by_id:
                return self.by_id[key]
            raise ValueError(f"no candidate {key!r} in this campaign (give its hash or id from `matloop candidates`)")
        if rec.formula:
            try:
                formula = Composition(rec.formula).reduced_formula
            except ValueError:
                raise ValueError(f"formula {rec.formula!r} cannot be parsed") from None
            hits = self.by_formula.get(formula, [])
            if len(hits) != 1:
                raise ValueError(f"{len(hits)} candidates have formula {formula}: name it by candidate or cif"
                                 if hits else f"no candidate has formula {formula}")
            return hits[0]
        structure = self._cif(rec.cif or "", base, allowed)
        formula = structure.composition.reduced_formula
        for h in self.by_formula.get(formula, []):
            row = self.by_hash[h]
            for js in (row["relaxed"], row["structure"]):
                if js and self.matcher.fit(structure, structure_from_json(js)):
                    return h
        raise ValueError(f"the CIF ({formula}) matches no candidate of this campaign")

    @staticmethod
    def _cif(text: str, base: Path, allowed: Path) -> Structure:
        if "data_" not in text and text.strip().lower().endswith(".cif"):
            try:
                text = check_inside(base / text.strip(), allowed).read_text()
            except LabInputError as exc:
                raise ValueError(str(exc)) from None
        try:
            return Structure.from_str(text, fmt="cif")
        except Exception as exc:
            raise ValueError(f"the cif cannot be parsed: {type(exc).__name__}: {exc}") from None


def ingest_lab_file(store, cid: str, path: Path, skip_invalid: bool = False, dry_run: bool = False) -> IngestReport:
    """Validate and store every row of ``path`` for campaign ``cid``.

    Nothing is written unless every row is valid; with ``skip_invalid`` the valid rows are written and the
    invalid ones go to ``<campaign_dir>/lab/<name>.rejected.csv`` with their line and reason. ``dry_run``:
    validate only (the same errors, nothing written; ``written`` is then 0).
    """
    cfg = store.config(cid)
    allowed = cfg.lab.allowed_dir(cfg.output_dir, store.campaign(cid).campaign_dir)
    resolved = check_inside(Path(path), allowed)
    rows = read_rows(resolved)
    if not rows:
        raise LabInputError(f"{path} has no rows")
    index = CandidateIndex(store.lab_candidates(cid), cfg)
    good: list[tuple[int, LabRecord, str]] = []
    bad: list[tuple[int, str]] = []
    for line, raw in rows:
        try:
            rec = parse_row(raw)
            good.append((line, rec, index.match(rec, resolved.parent, allowed)))
        except ValueError as exc:
            bad.append((line, str(exc)))
    if bad and not skip_invalid:
        raise LabInputError(f"{path}: {len(bad)} of {len(rows)} rows are invalid; nothing was written "
                            "(fix them, or pass --skip-invalid to store the valid rows)", bad)
    if dry_run:
        return IngestReport(file=str(resolved), rows=len(rows), written=0, rejected=bad)
    reject_file = None
    if bad:
        out = Path(store.campaign(cid).campaign_dir) / "lab" / f"{resolved.stem}.rejected.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        raw_by_line = dict(rows)
        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["line", "reason", *FIELDS], extrasaction="ignore")
            writer.writeheader()
            for line, reason in bad:
                writer.writerow({"line": line, "reason": reason, **raw_by_line[line]})
        reject_file = str(out)
    written = store.save_lab(cid, [(line, rec, h) for line, rec, h in good], str(resolved))
    return IngestReport(file=str(resolved), rows=len(rows), written=written, rejected=bad, reject_file=reject_file)


@task(name="lab-ingest")
def lab_ingest_task(store_url: str, campaign_id: str, path: str, skip_invalid: bool = False) -> dict:
    from tasks.store import Store

    start = time.time()
    report = ingest_lab_file(Store(store_url), campaign_id, Path(path), skip_invalid)
    return {**report.model_dump(), "start": start, "end": time.time()}
