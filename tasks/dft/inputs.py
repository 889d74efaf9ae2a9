"""atomate2 Makers for the DFT step, built from typed settings (never mutated while running).

CP2K: atomate2's ``StaticMaker`` / ``RelaxMaker`` with a ``StaticSetGenerator``/``RelaxSetGenerator`` whose
basis sets and GTH pseudopotentials are matched per element from CP2K's data files. VASP: atomate2's
MP-compatible ``MPGGADoubleRelaxStaticMaker`` for clusters that have VASP.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

from pymatgen.core import Structure

from conf.dft import CP2KSettings
from tasks.errors import MatloopError

MAGNETIC = frozenset({"V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Mo", "Ru", "Rh", "W", "Re", "Os", "Ir",
                      "Ce", "Pr", "Nd", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb"})


class DFTInputError(MatloopError):
    """A structure cannot be set up for DFT with the chosen settings (e.g. an element without basis)."""


@lru_cache(maxsize=8)
def _basis_valences(data_dir: str, family: str) -> dict[str, int]:
    """Element -> valence q of the ``family`` basis in BASIS_MOLOPT (lines 'El FAMILY FAMILY-qN')."""
    out = {}
    pattern = re.compile(rf"^\s*([A-Z][a-z]?)\s+{re.escape(family)}\s+\S*-q(\d+)\s*$")
    for line in (Path(data_dir) / "BASIS_MOLOPT").read_text().splitlines():
        m = pattern.match(line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


@lru_cache(maxsize=8)
def _potentials(data_dir: str, functional: str) -> frozenset[tuple[str, int]]:
    pattern = re.compile(rf"^\s*([A-Z][a-z]?)\s+GTH-{functional}-q(\d+)\b")
    return frozenset((m.group(1), int(m.group(2))) for line in (Path(data_dir) / "GTH_POTENTIALS").read_text()
                     .splitlines() if (m := pattern.match(line)))


def basis_and_potential(elements: list[str], settings: CP2KSettings) -> dict[str, dict[str, str | None]]:
    """Basis and pseudopotential per element; every element lacking either is named in one error."""
    data = str(settings.cp2k_data_dir)
    if not (Path(data) / "BASIS_MOLOPT").is_file():
        raise DFTInputError(f"CP2K data not found in {data} (install cp2k-data or set dft.cp2k.cp2k_data_dir)")
    valence = _basis_valences(data, settings.basis_family)
    potentials = _potentials(data, settings.functional)
    out, missing = {}, []
    for el in sorted(set(elements)):
        q = valence.get(el)
        if q is None or (el, q) not in potentials:
            missing.append(el)
            continue
        out[el] = {"basis": settings.basis_family, "potential": f"GTH-{settings.functional}-q{q}",
                   "aux_basis": None}
    if missing:
        raise DFTInputError(f"no {settings.basis_family} basis with a matching GTH-{settings.functional} "
                            f"pseudopotential for {missing} in {data}")
    return out


ENERGY_FIELDS = ("calculation", "functional", "basis_family", "cutoff", "eps_default", "eps_scf",
                 "kpoints_per_atom", "spin_polarized")


def cp2k_settings_hash(settings: CP2KSettings) -> str:
    """Hash of the settings that change a converged energy (not max_scf, paths or the executable), so a
    rerun with more SCF steps still shares elemental references with the first attempt."""
    payload = json.dumps({k: getattr(settings, k) for k in ENERGY_FIELDS}, sort_keys=True)
    return "cp2k-" + hashlib.sha256(payload.encode()).hexdigest()[:11]


def spin_polarized(structure: Structure, settings: CP2KSettings) -> bool:
    if settings.spin_polarized != "auto":
        return settings.spin_polarized == "yes"
    return any(el.symbol in MAGNETIC for el in structure.composition.elements)


def cp2k_maker(structure: Structure, settings: CP2KSettings):
    """An atomate2 CP2K Maker for ``structure`` (a new Maker per calculation)."""
    from atomate2.cp2k.jobs.core import RelaxMaker, StaticMaker
    from atomate2.cp2k.sets.core import RelaxSetGenerator, StaticSetGenerator
    from pymatgen.io.vasp.inputs import Kpoints

    elements = [el.symbol for el in structure.composition.elements]
    user = {"xc_functionals": [settings.functional],
            "spin_polarized": spin_polarized(structure, settings), "cutoff": settings.cutoff,
            "eps_default": settings.eps_default, "eps_pgf_orb": settings.eps_default,
            "eps_scf": settings.eps_scf,
            "basis_and_potential": basis_and_potential(elements, settings),
            # pymatgen fixes MAX_SCF at 400 for diagonalisation (k-points); set it explicitly
            "override_default_params": {"FORCE_EVAL": {"DFT": {"SCF": {"MAX_SCF": settings.max_scf,
                                                                       "EPS_SCF": settings.eps_scf}}}}}
    kpoints = Kpoints.automatic_density(structure, settings.kpoints_per_atom * len(structure))
    if settings.calculation == "relax":
        maker_cls, gen_cls = RelaxMaker, RelaxSetGenerator
    else:  # "static": with the band gap at the SCF's k-points unless switched off (tasks.dft.bands)
        maker_cls, gen_cls = StaticMaker, StaticSetGenerator
        if settings.band_gap:
            from tasks.dft.gap_set import GapStaticSetGenerator as gen_cls
    generator = gen_cls(user_input_settings=user, user_kpoints_settings=kpoints)
    return maker_cls(input_set_generator=generator,
                     run_cp2k_kwargs={"cp2k_cmd": settings.command, "max_errors": settings.max_errors,
                                      "custodian_kwargs": {"polling_time_step": 1, "monitor_freq": 5}})


def vasp_flow(structure: Structure):
    """atomate2's MP-compatible GGA double relaxation + static for clusters with VASP."""
    from atomate2.vasp.flows.mp import MPGGADoubleRelaxStaticMaker

    return MPGGADoubleRelaxStaticMaker().make(structure)
