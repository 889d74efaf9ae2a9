"""MLIP backends: contract tests over every backend (real CHGNet, a real tiny MACE), and auto's fallback."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from conf.schema import RelaxConfig
from tasks.errors import MLIPUnavailableError
from tasks.mlip import load_calculator, resolve_mlip

pytestmark = pytest.mark.slow


@pytest.fixture(params=["chgnet", "mace"])
def relax_cfg(request, tiny_mace) -> RelaxConfig:
    if request.param == "mace":
        return RelaxConfig(backend="mace", mace_model=str(tiny_mace))
    return RelaxConfig(backend="chgnet")


def test_backend_gives_finite_energy_forces_stress_and_an_identity(relax_cfg):
    spec = resolve_mlip(relax_cfg)
    assert spec.backend == relax_cfg.backend and spec.requested == relax_cfg.backend
    assert spec.identity.startswith({"mace": "mace:tiny.model:", "chgnet": "chgnet:0.3.0@"}[spec.backend])
    atoms = AseAtomsAdaptor.get_atoms(
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.25), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]]))
    atoms.rattle(0.05, seed=1)
    atoms.calc = load_calculator(spec)
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().shape == (8, 3) and np.isfinite(atoms.get_forces()).all()
    assert np.isfinite(atoms.get_stress()).all()
    assert load_calculator(spec) is atoms.calc  # one model per process


def test_auto_prefers_mace_when_weights_exist(tiny_mace):
    spec = resolve_mlip(RelaxConfig(backend="auto", mace_model=str(tiny_mace)))
    assert spec.backend == "mace" and spec.requested == "auto" and not spec.fallback_reason


def test_auto_falls_back_to_chgnet_and_records_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # empty MACE download cache; no network here either
    spec = resolve_mlip(RelaxConfig(backend="auto", mace_model=str(tmp_path / "missing.model")))
    assert spec.backend == "chgnet" and spec.requested == "auto"
    assert "no model file" in spec.fallback_reason


def test_auto_remembers_that_a_foundation_model_could_not_be_fetched(tmp_path, monkeypatch):
    """Offline: the first campaign tries the download and falls back; later ones do not try again (for a day)."""
    import mace.calculators.foundations_models as foundations

    import tasks.mlip as mlip

    monkeypatch.setenv("MATLOOP_CACHE", str(tmp_path))
    calls = []

    def offline(model, *args, **kwargs):
        calls.append(model)
        raise OSError("network unreachable")

    monkeypatch.setattr(foundations, "download_mace_mp_checkpoint", offline)
    cfg = RelaxConfig(backend="auto", mace_model="medium")
    first = resolve_mlip(cfg)
    assert first.backend == "chgnet" and "network unreachable" in first.fallback_reason and calls == ["medium"]
    second = resolve_mlip(cfg)
    assert second.backend == "chgnet" and "remembered" in second.fallback_reason and calls == ["medium"]
    monkeypatch.setattr(mlip, "FAILURE_MEMORY_S", 0)  # after the memory runs out it tries again
    resolve_mlip(cfg)
    assert calls == ["medium", "medium"]
    with pytest.raises(MLIPUnavailableError, match="network unreachable"):  # an explicit request always tries
        resolve_mlip(RelaxConfig(backend="mace", mace_model="medium"))


def test_explicit_mace_without_weights_is_a_named_error(tmp_path):
    with pytest.raises(MLIPUnavailableError, match="no model file"):
        resolve_mlip(RelaxConfig(backend="mace", mace_model=str(tmp_path / "missing.model")))
    with pytest.raises(MLIPUnavailableError, match="not a file and not a MACE-MP foundation model"):
        resolve_mlip(RelaxConfig(backend="mace", mace_model="gigantic"))


def test_mace_and_chgnet_in_one_process(tiny_mace):
    """MACE switches torch's default dtype to float64; CHGNet must still work after it and vice versa."""
    atoms = AseAtomsAdaptor.get_atoms(
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.25), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]]))
    energies = []
    for cfg in (RelaxConfig(backend="mace", mace_model=str(tiny_mace)), RelaxConfig(backend="chgnet"),
                RelaxConfig(backend="mace", mace_model=str(tiny_mace))):
        a = atoms.copy()
        a.calc = load_calculator(resolve_mlip(cfg))
        energies.append(a.get_potential_energy())
    assert np.isfinite(energies).all() and energies[0] == pytest.approx(energies[2])



def test_the_dtype_gate_keeps_threads_of_the_other_dtype_out():
    """A rerun pre-relaxes with MACE (float64) in one thread while CHGNet (float32) polishes in another; torch's
    default dtype is process-wide, so a thread needing the other dtype must wait until the first is done."""
    import threading
    import time

    import torch

    from tasks.mlip import _DtypeGate

    gate, events, inside = _DtypeGate(), [], threading.Event()

    def use(dtype, hold_s, tag):
        with gate.use(dtype):
            events.append((tag, "in", torch.get_default_dtype()))
            inside.set()
            time.sleep(hold_s)
            events.append((tag, "out", torch.get_default_dtype()))

    first = threading.Thread(target=use, args=(torch.float64, 0.3, "mace"))
    first.start()
    assert inside.wait(10)
    inside.clear()
    same = threading.Thread(target=use, args=(torch.float64, 0.0, "mace2"))  # same dtype: runs alongside
    same.start()
    same.join(10)
    other = threading.Thread(target=use, args=(torch.float32, 0.0, "chgnet"))
    other.start()
    for t in (first, same, other):
        t.join(10)
        assert not t.is_alive()
    order = [(tag, what) for tag, what, _ in events]
    assert order.index(("mace2", "out")) < order.index(("mace", "out"))  # not serialised behind the first
    assert order.index(("chgnet", "in")) > order.index(("mace", "out"))  # waited for every float64 thread
    assert all(dtype == (torch.float32 if tag == "chgnet" else torch.float64) for tag, _, dtype in events)
    torch.set_default_dtype(torch.float32)


def test_a_model_loads_alone_in_the_dtype_gate():
    """Loading a MACE model traces e3nn modules with torch.fx, which patches nn.Module.__call__ for the whole
    process: a thread relaxing meanwhile failed with 'module is not installed as a submodule'. A load waits for
    the computing threads to leave and holds the gate alone."""
    import threading
    import time

    import torch

    from tasks.mlip import _DtypeGate

    gate, events, inside = _DtypeGate(), [], threading.Event()
    default = torch.get_default_dtype()

    def use(tag, hold_s, exclusive=False):
        with gate.use(torch.float64, exclusive=exclusive):
            events.append((tag, "in"))
            inside.set()
            time.sleep(hold_s)
            events.append((tag, "out"))

    try:
        first = threading.Thread(target=use, args=("relax", 0.3))
        first.start()
        assert inside.wait(10)
        load = threading.Thread(target=use, args=("load", 0.3, True))
        load.start()
        time.sleep(0.05)
        late = threading.Thread(target=use, args=("relax2", 0.0))  # same dtype, but a load is waiting
        late.start()
        for t in (first, load, late):
            t.join(10)
            assert not t.is_alive()
    finally:
        torch.set_default_dtype(default)
    order = events.index
    assert order(("load", "in")) > order(("relax", "out"))
    assert order(("relax2", "in")) > order(("load", "out"))


def test_a_mace_model_loads_while_another_thread_computes(tiny_mace):
    """The real race behind the gate's exclusive load (it failed within five loads before)."""
    import threading

    from ase.build import bulk

    from tasks.mlip import MLIPSpec, _new_calculator, load_calculator

    spec = MLIPSpec(backend="mace", model=str(tiny_mace), device="cpu", identity="tiny", requested="mace")
    errors, stop, ready = [], threading.Event(), threading.Event()

    def compute():
        calc = load_calculator(spec)
        ready.set()
        while not stop.is_set():
            try:
                atoms = bulk("MgO", "rocksalt", a=4.2)
                atoms.rattle(0.01)
                atoms.calc = calc
                atoms.get_forces()
            except Exception as exc:  # noqa: BLE001 - the test reports whatever the race raises
                errors.append(repr(exc))
                return

    worker = threading.Thread(target=compute)
    worker.start()
    try:
        assert ready.wait(60)
        for _ in range(6):
            _new_calculator(spec)
    finally:
        stop.set()
        worker.join(60)
    assert errors == []


def test_the_dtype_gate_does_not_starve_the_other_dtype():
    """An optimizer's thread re-enters the gate step after step; a thread of the other dtype still gets in soon
    (it used to wait until the optimizer stopped: a relaxation loop could hold CHGNet out for its whole run)."""
    import threading
    import time

    import torch

    from tasks.mlip import _DtypeGate

    gate, steps, stop = _DtypeGate(), [], threading.Event()

    def optimizer():
        while not stop.is_set():
            with gate.use(torch.float64):
                time.sleep(0.001)
            steps.append(1)

    def other(at):
        with gate.use(torch.float32):
            at.append(len(steps))

    default = torch.get_default_dtype()
    loops = [threading.Thread(target=optimizer) for _ in range(2)]
    try:
        for t in loops:
            t.start()
        time.sleep(0.05)
        at: list[int] = []
        waiter = threading.Thread(target=other, args=(at,))
        started = len(steps)
        waiter.start()
        waiter.join(10)
    finally:
        stop.set()
        for t in loops:
            t.join(10)
        torch.set_default_dtype(default)  # the gate leaves the last dtype set; other tests of this process need theirs
    assert at and at[0] - started < 50, (started, at)
