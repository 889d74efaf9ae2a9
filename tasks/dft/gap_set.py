"""atomate2's CP2K static input set with a band-structure print on the SCF's irreducible k-points
(:mod:`tasks.dft.bands` reads it). Imported only where a CP2K input is built: it imports atomate2."""

from __future__ import annotations

from dataclasses import dataclass

from atomate2.cp2k.sets.core import StaticSetGenerator
from pymatgen.io.cp2k.inputs import BandStructure, Keyword
from pymatgen.io.vasp.inputs import Kpoints

from tasks.dft.bands import BAND_FILE, mesh_points, with_gamma


@dataclass
class GapStaticSetGenerator(StaticSetGenerator):
    """A static set whose ``user_kpoints_settings`` is an automatic mesh gets ``&PRINT &BAND_STRUCTURE`` with
    that mesh's irreducible points and Gamma, one point per set line (``kpoints_line_density=1``: no points in
    between).
    A Gamma-only calculation (no ``&KPOINTS``) gets none."""

    def get_input_set(self, structure=None, prev_dir=None, optional_files=None):
        input_set = super().get_input_set(structure, prev_dir, optional_files)
        cp2k_input = input_set.cp2k_input
        if isinstance(self.user_kpoints_settings, Kpoints) and cp2k_input.check("FORCE_EVAL/DFT/KPOINTS"):
            points = with_gamma(mesh_points(cp2k_input.structure, self.user_kpoints_settings))
            section = BandStructure.from_kpoints(points, 1)
            section["FILE_NAME"] = Keyword("FILE_NAME", BAND_FILE)
            cp2k_input["FORCE_EVAL"]["DFT"]["PRINT"].insert(section)
        return input_set
