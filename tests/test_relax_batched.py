"""The batched relaxation engine (TorchSim) against the ASE engine on the same real tiny MACE: a contract over
both engines (same outcomes, energies, step counts), failures judged per structure, config checks."""

import numpy as np
import pytest
from ase.build import bulk
from pydantic import ValidationError
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from conf.schema import RelaxConfig
from tasks.candidate import structure_from_json
from tasks.context import relax_settings_hash
from tasks.errors import MLIPUnavailableError
from tasks.mlip import resolve_mlip
from tasks.relax import relax_many
from tasks.relax_batched import load_batched_model, relax_batched

pytestmark = pytest.mark.slow


def mgo_cells(n: int = 6) -> list[Structure]:
    """Rattled, strained Mg-O cells of 2 to 16 atoms (the tiny MACE knows Mg and O)."""
    rng = np.random.default_rng(0)
    bases = [(bulk("MgO", "rocksalt", a=4.3), (1, 1, 1)), (bulk("MgO", "rocksalt", a=4.1, cubic=True), (1, 1, 1)),
             (bulk("MgO", "wurtzite", a=3.3, c=5.2), (2, 1, 1)), (bulk("MgO", "zincblende", a=4.6), (2, 2, 1))]
    out = []
    for i in range(n):
        atoms, rep = bases[i % len(bases)]
        a = atoms.repeat(rep)
        a.rattle(0.05, seed=i)
        a.set_cell(a.cell @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
        out.append(AseAtomsAdaptor.get_structure(a))
    return out


@pytest.fixture(scope="module")
def mace_cfg(tiny_mace) -> RelaxConfig:
    return RelaxConfig(backend="mace", mace_model=str(tiny_mace))


@pytest.mark.parametrize("relax_cell", [True, False])
def test_batched_engine_matches_the_ase_engine(mace_cfg, relax_cell):
    spec = resolve_mlip(mace_cfg)
    items = [(f"h{i}", s, relax_cell) for i, s in enumerate(mgo_cells())]
    ase = relax_many(items, spec, mace_cfg)
    batched_cfg = mace_cfg.model_copy(update={"engine": "batched"})
    batched = relax_many(items, spec, batched_cfg)
    assert [r.hash for r in batched] == [h for h, _, _ in items]
    for a, b in zip(ase, batched, strict=True):
        assert a.status == b.status == "converged", (a.reason, b.reason)
        assert b.energy_per_atom == pytest.approx(a.energy_per_atom, abs=2e-4)
        assert b.volume_ratio == pytest.approx(a.volume_ratio, abs=2e-3)
        # cell relaxation takes the same steps as ASE here; TorchSim's fixed-cell FIRE differs by a few
        assert abs(a.n_steps - b.n_steps) <= (1 if relax_cell else max(2, a.n_steps // 4)) and b.n_steps > 0
        assert b.max_force < mace_cfg.fmax and b.worker["pid"] and b.mlip == spec.identity
        assert b.settings_hash == relax_settings_hash(batched_cfg) != a.settings_hash
        assert len(structure_from_json(b.final_structure)) == len(items[batched.index(b)][1])
        if not relax_cell:
            assert b.volume_ratio == pytest.approx(1.0)
    assert sum(r.wall_time_s for r in batched) > 0


def test_batched_failures_are_judged_per_structure(mace_cfg):
    spec = resolve_mlip(mace_cfg)
    cells = mgo_cells(3)
    short = mace_cfg.model_copy(update={"engine": "batched", "max_steps": 3})
    results = relax_batched([(f"h{i}", s, True) for i, s in enumerate(cells)], spec, short)
    assert [r.status for r in results] == ["not_converged"] * 3 and all(r.n_steps == 3 for r in results)
    assert all("3 steps" in r.reason and r.energy is not None for r in results)

    # a cell squeezed to half its volume, with a tight volume bound: exploded; its batch-mates converge
    squeezed = cells[0].copy()
    squeezed.scale_lattice(cells[0].volume * 0.55)
    tight = mace_cfg.model_copy(update={"engine": "batched", "max_volume_ratio": 1.3, "max_steps": 300})
    results = relax_batched([("bad", squeezed, True), ("ok1", cells[1], True), ("ok2", cells[2], True)], spec, tight)
    assert results[0].status == "exploded" and "volume ratio" in results[0].reason
    assert [r.status for r in results[1:]] == ["converged", "converged"]
    assert results[0].n_steps < 300  # it left the batch when the bound tripped


def test_a_structure_that_breaks_the_batch_is_an_error_alone(mace_cfg):
    spec = resolve_mlip(mace_cfg)
    cells = mgo_cells(2)
    alien = Structure(Lattice.cubic(4.0), ["Fe", "Fe"], [[0, 0, 0], [.5, .5, .5]])  # not in the model's elements
    results = relax_batched([("ok0", cells[0], True), ("alien", alien, True), ("ok1", cells[1], True)], spec,
                            mace_cfg.model_copy(update={"engine": "batched"}))
    assert [r.status for r in results] == ["converged", "error", "converged"]
    assert results[1].reason and results[1].energy is None


def test_batched_needs_mace_and_fire():
    for bad in ({"backend": "auto"}, {"backend": "chgnet"}, {"backend": "mace", "optimizer": "BFGS"}):
        with pytest.raises(ValidationError, match="engine 'batched' needs backend 'mace' and optimizer 'FIRE'"):
            RelaxConfig(engine="batched", **bad)
    with pytest.raises(MLIPUnavailableError, match="batched"):
        load_batched_model(resolve_mlip(RelaxConfig(backend="chgnet")))


def test_settings_hash_of_the_ase_engine_is_what_it_was_before_engines():
    # computed with matloop before relax.engine existed: stores written then still match (reuse, resume)
    assert relax_settings_hash(RelaxConfig()) == "51ace56b5dbb"
    assert relax_settings_hash(RelaxConfig(fmax=0.02, max_steps=500)) == "205bd82de387"
