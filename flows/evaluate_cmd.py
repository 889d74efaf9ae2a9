"""``matloop evaluate``: the generation metrics of a set of structures, written to a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from conf.schema import RelaxConfig, TargetRange


def parse_target(text: str) -> tuple[str, TargetRange]:
    """``name=min:max`` (either side may be empty) or ``name=value``."""
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"target {text!r}: expected name=min:max or name=value")
    try:
        if ":" in spec:
            lo, hi = spec.split(":", 1)
            return name, TargetRange(min=float(lo) if lo else None, max=float(hi) if hi else None)
        return name, TargetRange(value=float(spec))
    except ValueError as exc:
        raise typer.BadParameter(f"target {text!r}: {exc}") from None


def evaluate(
    samples: Annotated[Path, typer.Argument(help="extxyz, CIF folder, or MP-20-format CSV.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    reference: Annotated[Path | None, typer.Option(help="Reference/training set (same formats).")] = None,
    hull: Annotated[Path | None, typer.Option(help="Hull table: formula + formation_energy_per_atom CSV.")] = None,
    elemental_refs: Annotated[str | None, typer.Option(
        help="Elemental energies (JSON of ComputedEntry or numbers), or 'mlip' to relax them.")] = None,
    relax: Annotated[str, typer.Option(help="none | mlip: relax samples with the MLIP first.")] = "none",
    mlip: Annotated[str, typer.Option(help="MLIP backend for --relax: auto | mace | chgnet.")] = "auto",
    mace_model: Annotated[str, typer.Option(help="MACE foundation name or model path.")] = "medium-mpa-0",
    targets: Annotated[list[str] | None, typer.Option("--target", help="name=min:max or name=value.")] = None,
    dataset: Annotated[str | None, typer.Option(help="mp20 | perov5 | carbon24 (coverage cutoffs).")] = None,
    comp_scaler: Annotated[str, typer.Option(
        help="Coverage composition scaler: cdvae (CDVAE's, default) | reference (fitted on --reference) | "
             "a JSON file {means, stds}.")] = "cdvae",
    threshold: Annotated[float, typer.Option(help="Stability threshold, eV/atom.")] = 0.1,
    oxidation_states: Annotated[str, typer.Option(help="smact14 (CDVAE) | icsd24 (SMACT 4).")] = "smact14",
    coverage: Annotated[bool, typer.Option(help="Compute COV-R/COV-P (slow for large sets).")] = True,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    limit: Annotated[int | None, typer.Option(help="Read at most N structures of each file.")] = None,
) -> None:
    """Validity, uniqueness, novelty, stability, S.U.N., coverage, statistics and property satisfaction."""
    from flows.cli_common import console, fail
    from tasks.errors import MatloopError
    from tasks.metrics.coverage import load_comp_scaler
    from tasks.metrics.hull import ReferenceHull, load_elemental_references
    from tasks.metrics.io import load_structure_table
    from tasks.metrics.plots import hull_plot, property_histograms
    from tasks.metrics.samples import EvaluationOptions, evaluate_samples

    if relax not in ("none", "mlip"):
        fail(ValueError(f"--relax {relax!r}; allowed: none, mlip"))
    try:
        if comp_scaler in ("cdvae", "reference"):
            scaler = comp_scaler
        else:
            scaler = tuple(x.tolist() for x in load_comp_scaler(Path(comp_scaler)))
        opts = EvaluationOptions(
            stability_threshold=threshold, oxidation_states=oxidation_states, dataset=dataset, coverage=coverage,
            targets=dict(parse_target(t) for t in targets or []), workers=workers,
            comp_scaler=scaler)
        table = load_structure_table(samples, limit)
        ref = load_structure_table(reference, limit) if reference else None
        ref_hull = ReferenceHull.from_table(hull) if hull else None
        elemental = None
        if elemental_refs and elemental_refs != "mlip":
            elemental = load_elemental_references(Path(elemental_refs))
        if relax == "mlip":
            from tasks.metrics.relaxed import mlip_elemental_references, relax_table

            cfg = RelaxConfig(backend=mlip, mace_model=mace_model)
            table, spec = relax_table(table, cfg, workers)
            converged = int(table["relax_status"].eq("converged").sum())
            console.print(f"relaxed {converged}/{len(table)} with {spec.identity}")
            if elemental_refs == "mlip":
                needed = {el.symbol for s in table["structure"] if s is not None for el in s.composition.elements}
                elemental = mlip_elemental_references(needed, cfg, spec)
        metrics, df = evaluate_samples(table, ref, ref_hull, elemental, opts)
    except (MatloopError, ValueError, OSError) as exc:
        fail(exc)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    df.drop(columns=[c for c in ("structure", "relaxed_structure") if c in df.columns]).to_csv(
        out / "structures.csv", index=False)
    property_histograms(df, ref, out / "properties.png")
    hull_png = hull_plot(df, ref_hull, out / "hull.png")
    for key, value in metrics.items():
        if isinstance(value, float):
            console.print(f"{key:<40} {value:.4f}")
    console.print(f"wrote metrics.json, structures.csv, properties.png{', hull.png' if hull_png else ''} to {out}")
