"""Band gaps from CP2K: the Kohn-Sham levels at the SCF's own k-points, written after the SCF converges.

CP2K prints no gap for a k-point calculation, and pymatgen's ``print_bandstructure`` only accepts line-mode
k-points (and its ``BAND.bs`` reader fails on CP2K 2023's files, so the file has another name). So a static calculation adds a
``&BAND_STRUCTURE`` print whose k-point set is the irreducible wedge of the SCF mesh (spglib, the mesh's own
Monkhorst-Pack or Gamma convention) and :func:`band_gap_from_bs` reads the file: the gap is the lowest empty
level minus the highest filled one over every k-point and spin (0 for a metal). The gap is therefore the one
sampled on the SCF mesh: a direct gap between mesh points is missed, as in any gap read from an SCF, and on the
default coarse mesh (16 k-points per atom) a metal whose bands cross the Fermi level between mesh points shows a
spurious gap (hcp Mg: 0.5 eV). Raise ``dft.cp2k.kpoints_per_atom`` where gaps of metals or small gaps matter.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from pymatgen.core import Structure
from pymatgen.io.vasp.inputs import Kpoints

# not pymatgen's BAND.bs: its Cp2kOutput would parse that file, and it fails on CP2K 2023's (atomate2's parse too)
BAND_FILE = "KS_LEVELS.bs"


class BandFileError(ValueError):
    """A CP2K band-structure file that cannot be read as levels with occupations."""


def mesh_points(structure: Structure, kpoints: Kpoints) -> Kpoints:
    """The irreducible k-points (fractional, with weights) of ``kpoints``' automatic mesh, as explicit
    reciprocal k-points: the points CP2K's SCF uses, for its band-structure print."""
    from pymatgen.io.vasp.inputs import KpointsSupportedModes
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    mesh = tuple(int(n) for n in (kpoints.kpts[0] * 3 if len(kpoints.kpts[0]) == 1 else kpoints.kpts[0]))
    monkhorst = kpoints.style == KpointsSupportedModes.Monkhorst
    shift = tuple(int(monkhorst and n % 2 == 0) for n in mesh)  # Monkhorst-Pack: an even mesh is shifted
    points = SpacegroupAnalyzer(structure).get_ir_reciprocal_mesh(mesh=mesh, is_shift=shift)
    return Kpoints(comment=f"irreducible {mesh} mesh", style=KpointsSupportedModes.Reciprocal,
                   num_kpts=len(points), kpts=[tuple(float(x) for x in k) for k, _ in points],
                   kpts_weights=[float(w) for _, w in points], coord_type="Reciprocal")


def with_gamma(points: Kpoints) -> Kpoints:
    """``points`` with Gamma appended (weight 0) when the mesh misses it, as a shifted (Monkhorst-Pack even) mesh
    does: the band edges of many insulators lie at Gamma (Li2O: 6.7 eV on the shifted 2x2x2 points, 5.0 eV in the
    Materials Project). Appended, not prepended: pymatgen reads a list that starts at Gamma as Gamma-only."""
    if any(all(abs(x) < 1e-9 for x in k) for k in points.kpts):
        return points
    return Kpoints(comment=f"{points.comment} + Gamma", style=points.style, num_kpts=len(points.kpts) + 1,
                   kpts=[*points.kpts, (0.0, 0.0, 0.0)], kpts_weights=[*points.kpts_weights, 0.0],
                   coord_type=points.coord_type)


def band_gap_from_bs(path: Path) -> float:
    """Gap (eV) in a CP2K ``BAND_STRUCTURE`` file (plain or gzipped). A level is filled when it holds more than
    half of the largest occupation in the file (2 without spin, 1 with). 0.0 for a metal: a level partly filled
    (occupation between 5 % and 95 % of full, smeared across the Fermi level), a band (same index and spin)
    filled at one k-point and empty at another, or the highest filled level at or above the lowest empty one."""
    opener = gzip.open if path.suffix == ".gz" else open
    levels: list[tuple[str, int, float, float]] = []  # spin, band, energy (eV), occupation
    spin = "1"
    with opener(path, "rt") as fh:
        for line in fh:
            fields = line.split()
            if not fields:
                continue
            if fields[0].startswith("#"):
                if "Spin" in fields:
                    spin = fields[fields.index("Spin") + 1].rstrip(":")
                continue
            try:
                levels.append((spin, int(fields[0]), float(fields[1]), float(fields[2])))
            except (IndexError, ValueError) as exc:
                raise BandFileError(f"{path}: not a band line: {line.strip()!r}") from exc
    if not levels:
        raise BandFileError(f"{path} holds no levels")
    full = max(occ for *_, occ in levels)
    filled = [e for *_, e, occ in levels if occ > full / 2]
    empty = [e for *_, e, occ in levels if occ <= full / 2]
    if not filled or not empty:
        raise BandFileError(f"{path} has no {'filled' if not filled else 'empty'} level (add empty MOs)")
    status: dict[tuple[str, int], set[bool]] = {}
    for spin_, band, _, occ in levels:
        status.setdefault((spin_, band), set()).add(occ > full / 2)
    partial = any(0.05 * full < occ < 0.95 * full for *_, occ in levels)
    if partial or any(len(seen) > 1 for seen in status.values()):
        return 0.0
    return max(0.0, min(empty) - max(filled))


def find_band_file(calc_dir: Path) -> Path | None:
    """The newest band file (atomate2 may have gzipped it) under ``calc_dir``'s job folders."""
    found = sorted(calc_dir.glob(f"**/{BAND_FILE}*"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
