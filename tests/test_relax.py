"""Relaxation outcomes with real calculators: converged, not converged, exploded, NaN, error."""

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lj import LennardJones
from pymatgen.core import Lattice, Structure

from conf.schema import RelaxConfig
from tasks.candidate import structure_from_json
from tasks.mlip import load_calculator, resolve_mlip
from tasks.relax import relax_structure

ROCKSALT = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.4), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])


class NaNCalculator(Calculator):
    """Returns NaN energies: stands in for a model that blows up (unit test of our own failure handling)."""

    implemented_properties = ["energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": float("nan"), "forces": np.zeros((len(atoms), 3)), "stress": np.zeros(6)}


class RaisingCalculator(NaNCalculator):
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        raise RuntimeError("graph construction failed")


@pytest.mark.slow
def test_chgnet_relaxes_rocksalt():
    cfg = RelaxConfig(backend="chgnet", fmax=0.05)
    spec = resolve_mlip(cfg)
    r = relax_structure(ROCKSALT.get_primitive_structure(), load_calculator(spec), cfg, hash="h", mlip=spec.identity)
    assert r.status == "converged" and r.reason == ""
    assert r.energy_per_atom == pytest.approx(r.energy / 2) and r.max_force <= 0.05
    assert 4.1 < structure_from_json(r.final_structure).volume ** (1 / 3) * 4 ** (1 / 3) < 4.4  # a of rocksalt
    assert r.mlip == spec.identity and r.n_steps > 0


def test_not_converged_when_steps_run_out():
    r = relax_structure(ROCKSALT, LennardJones(sigma=2.0, epsilon=0.1, rc=6.0), RelaxConfig(max_steps=2),
                        hash="h", mlip="lj")
    assert r.status == "not_converged" and "2 steps" in r.reason and r.energy is not None


def test_exploding_cell_is_recorded():
    # a strongly repulsive LJ pushes the cell apart until the volume bound trips
    r = relax_structure(ROCKSALT, LennardJones(sigma=4.0, epsilon=1.0, rc=12.0),
                        RelaxConfig(max_steps=300, max_volume_ratio=1.5), hash="h", mlip="lj")
    assert r.status == "exploded" and "volume ratio" in r.reason


def test_nan_and_error_are_recorded_not_raised():
    nan = relax_structure(ROCKSALT, NaNCalculator(), RelaxConfig(), hash="h", mlip="nan")
    assert nan.status == "nan" and nan.energy is None and nan.final_structure is None
    err = relax_structure(ROCKSALT, RaisingCalculator(), RelaxConfig(), hash="h", mlip="boom")
    assert err.status == "error" and "graph construction failed" in err.reason
