"""All generation metrics for a set of structures: one table of verdicts and one dict of rates.

Definitions (every rate is over all generated structures unless said otherwise):

* validity — CDVAE compositional and structural validity (:mod:`tasks.metrics.validity`);
* uniqueness — not a StructureMatcher duplicate of an earlier structure of the set;
* novelty — matches no reference structure (``novelty_of_unique`` is over unique structures);
* stability — energy above hull at most the threshold (0.1 eV/atom by default; 0.0 is reported too);
* S.U.N. — stable and unique and novel;
* coverage — CDVAE's COV-R / COV-P on valid structures (:mod:`tasks.metrics.coverage`);
* statistics — Wasserstein distances of density, number of elements and shared property columns between
  valid generated structures and the reference set;
* property satisfaction — share whose property lies in the target range.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field

from conf.base import Strict
from conf.schema import MatcherConfig, TargetRange
from tasks.errors import EvaluationError
from tasks.metrics.coverage import COV_CUTOFFS, ScalerChoice, coverage, fingerprints, load_comp_scaler
from tasks.metrics.distributions import density, n_elements, property_satisfaction, wasserstein
from tasks.metrics.hull import ReferenceHull, formation_energy_per_atom
from tasks.metrics.matching import fast_decisions
from tasks.metrics.validity import OxidationSet, composition_valid, structure_valid

STRUCTURE_COLUMNS = ("id", "structure", "error", "relaxed_structure")


class EvaluationOptions(Strict):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    matcher: MatcherConfig = MatcherConfig()
    stability_threshold: float = Field(0.1, description="eV/atom.")
    oxidation_states: OxidationSet = "smact14"
    dataset: Literal["mp20", "perov5", "carbon24"] | None = Field(None, description="Picks COV cutoffs.")
    struct_cutoff: float | None = None
    comp_cutoff: float | None = None
    comp_scaler: ScalerChoice | tuple[list[float], list[float]] = Field(
        "cdvae", description="Composition-fingerprint standardisation for coverage: 'cdvae' (CDVAE's fixed "
        "means/stds, comparable with the papers), 'reference' (fitted on the reference set), or (means, stds).")
    targets: dict[str, TargetRange] = Field(default_factory=dict)
    coverage: bool = True
    workers: int = 1


def _energies(row: pd.Series, elemental: dict[str, float] | None) -> tuple[float, float, str]:
    """(energy per atom, formation energy per atom, reason if missing) of one row, NaN when unknown."""
    comp = row["structure"].composition
    epa = row.get("energy_per_atom", np.nan)
    if (epa is None or not np.isfinite(epa)) and np.isfinite(row.get("energy", np.nan)):
        epa = row["energy"] / comp.num_atoms
    ef = row.get("formation_energy_per_atom", np.nan)
    if (ef is None or not np.isfinite(ef)) and epa is not None and np.isfinite(epa):
        if elemental is None:
            return epa, np.nan, "energy given but no elemental references to turn it into a formation energy"
        try:
            ef = formation_energy_per_atom(comp, float(epa), elemental)
        except EvaluationError as exc:
            return epa, np.nan, str(exc)
    if ef is None or not np.isfinite(ef):
        return np.nan, np.nan, "no energy"
    return (epa if epa is not None else np.nan), float(ef), ""


def _float(x: object) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def per_structure(samples: pd.DataFrame, references: pd.DataFrame | None, hull: ReferenceHull | None,
                  elemental: dict[str, float] | None, opts: EvaluationOptions) -> pd.DataFrame:
    """One row per generated structure with every verdict and its reason."""
    df = samples.copy().reset_index(drop=True)
    ok = df["structure"].notna()
    df["formula"] = [s.composition.reduced_formula if s is not None else "" for s in df["structure"]]
    df["nsites"] = [len(s) if s is not None else 0 for s in df["structure"]]
    df["comp_valid"] = [bool(s is not None and composition_valid(s.composition, opts.oxidation_states))
                        for s in df["structure"]]
    df["struct_valid"] = [bool(s is not None and structure_valid(s)) for s in df["structure"]]
    df["valid"] = df["comp_valid"] & df["struct_valid"]
    df["density"] = [density(s) if s is not None else np.nan for s in df["structure"]]
    df["n_elements"] = [n_elements(s) if s is not None else np.nan for s in df["structure"]]
    parsed = list(df.loc[ok, "structure"])
    refs = [] if references is None else [s for s in references["structure"] if s is not None]
    decisions = fast_decisions(parsed, refs, opts.matcher, workers=opts.workers)
    df["unique"], df["duplicate_of"], df["novel"], df["matches_reference"] = False, "", False, ""
    ids = list(df.loc[ok, "id"])
    ref_ids = [] if references is None else [i for i, s in zip(references["id"], references["structure"])
                                             if s is not None]
    for idx, d in zip(df.index[ok], decisions):
        df.at[idx, "unique"] = d.unique
        df.at[idx, "duplicate_of"] = "" if d.unique else str(ids[d.duplicate_of])
        df.at[idx, "novel"] = d.novel if references is not None else True
        df.at[idx, "matches_reference"] = "" if d.novel else str(ref_ids[d.matches_reference])
    energies, ehull, reasons = [], [], []
    for _, row in df.iterrows():
        if row["structure"] is None:
            energies.append((np.nan, np.nan))
            ehull.append(np.nan)
            reasons.append(row["error"])
            continue
        epa, ef, why = _energies(row, elemental)
        eh = _float(row.get("e_above_hull", np.nan))
        if hull is not None and np.isfinite(ef):
            try:
                eh = hull.e_above_hull(row["structure"].composition, ef)
            except EvaluationError as exc:
                eh, why = np.nan, str(exc)
        elif hull is None and not np.isfinite(eh) and not why:
            why = "no reference hull"
        energies.append((epa, ef))
        ehull.append(eh)
        reasons.append(why if not np.isfinite(eh) else "")
    df["energy_per_atom"] = [e[0] for e in energies]
    df["formation_energy_per_atom"] = [e[1] for e in energies]
    df["e_above_hull"] = ehull
    df["stable"] = df["e_above_hull"] <= opts.stability_threshold
    df["stable_strict"] = df["e_above_hull"] <= 0.0
    df["sun"] = df["stable"] & df["unique"] & df["novel"]
    df["stability_note"] = reasons
    return df


def summarize(df: pd.DataFrame, references: pd.DataFrame | None, opts: EvaluationOptions) -> dict:
    """The rates and distances of :func:`per_structure`'s table."""
    n = len(df)

    def rate(mask: pd.Series) -> float:
        return float(mask.sum()) / n if n else 0.0

    with_energy = df["e_above_hull"].notna()
    out: dict = {
        "n_generated": n, "n_parsed": int(df["structure"].notna().sum()),
        "comp_validity": rate(df["comp_valid"]), "struct_validity": rate(df["struct_valid"]),
        "validity": rate(df["valid"]), "uniqueness": rate(df["unique"]),
        "novelty": rate(df["novel"]) if references is not None else None,
        "novelty_of_unique": (float((df["novel"] & df["unique"]).sum() / df["unique"].sum())
                              if references is not None and df["unique"].any() else None),
        "n_with_energy": int(with_energy.sum()),
        "stability": rate(df["stable"]) if with_energy.any() else None,
        "stability_strict": rate(df["stable_strict"]) if with_energy.any() else None,
        "sun": rate(df["sun"]) if with_energy.any() else None,
        "stability_threshold": opts.stability_threshold,
        "matcher": opts.matcher.model_dump() | {"comparator": "SpeciesComparator", "primitive_cell": True,
                                                 "scale": True, "attempt_supercell": False},
        "validity_oxidation_states": opts.oxidation_states,
    }
    for name, target in opts.targets.items():
        values = [_float(v) for v in df[name]] if name in df.columns else []
        out[f"property_satisfaction.{name}"] = property_satisfaction(values, target, n)
    if references is not None:
        valid = df[df["valid"]]
        ref_ok = references[references["structure"].notna()]
        out["wasserstein.density"] = wasserstein(valid["density"], [density(s) for s in ref_ok["structure"]])
        out["wasserstein.n_elements"] = wasserstein(valid["n_elements"], [n_elements(s) for s in ref_ok["structure"]])
        for col in sorted(set(df.columns) & set(references.columns) - set(STRUCTURE_COLUMNS) - {"formula"}):
            # float columns only: integer columns are indices and labels (mp20_index, spacegroup.number, ...)
            if pd.api.types.is_float_dtype(df[col]) and pd.api.types.is_float_dtype(references[col]):
                out[f"wasserstein.{col}"] = wasserstein(df.loc[df["valid"], col], references[col])
    return out


def add_coverage(metrics: dict, df: pd.DataFrame, references: pd.DataFrame, opts: EvaluationOptions) -> None:
    """COV-R / COV-P of the valid generated structures against the reference set (CDVAE protocol)."""
    struct_cut, comp_cut = COV_CUTOFFS.get(opts.dataset or "", (None, None))
    struct_cut, comp_cut = opts.struct_cutoff or struct_cut, opts.comp_cutoff or comp_cut
    if struct_cut is None or comp_cut is None:
        metrics["coverage"] = "skipped: give dataset (mp20, perov5, carbon24) or both cutoffs"
        return
    gen = fingerprints([s for s, v in zip(df["structure"], df["valid"]) if v], workers=opts.workers)
    gen += [None] * int((~df["valid"]).sum())  # invalid structures count as uncovered (stricter than CDVAE)
    ref = fingerprints([s for s in references["structure"] if s is not None], workers=opts.workers)
    if opts.comp_scaler == "cdvae":
        scaler, label = load_comp_scaler(), "cdvae"
    elif opts.comp_scaler == "reference":
        scaler, label = None, "fitted on the reference set"
    else:
        scaler, label = tuple(np.asarray(x, dtype=float) for x in opts.comp_scaler), "given"
    metrics.update(coverage(gen, ref, struct_cut, comp_cut, scaler))
    metrics["coverage_cutoffs"] = {"structure": struct_cut, "composition": comp_cut, "comp_scaler": label}


def evaluate_samples(samples: pd.DataFrame, references: pd.DataFrame | None = None,
                     hull: ReferenceHull | None = None, elemental: dict[str, float] | None = None,
                     opts: EvaluationOptions = EvaluationOptions()) -> tuple[dict, pd.DataFrame]:
    """Metrics dict and per-structure table for ``samples`` (see :mod:`tasks.metrics.io` for the table)."""
    if len(samples) == 0:
        raise EvaluationError("no generated structures to evaluate")
    df = per_structure(samples, references, hull, elemental, opts)
    metrics = summarize(df, references, opts)
    if references is not None and opts.coverage:
        add_coverage(metrics, df, references, opts)
    return metrics, df
