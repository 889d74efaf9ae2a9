"""DFT step logic without DFT: selection, formation energies, settings hashes, SLURM command lines, and the
calculation state machine on a real SQLite store (the scheduler is a fake here; real CP2K and real SLURM
run in test_dft_cp2k.py and test_dft_slurm.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from pydantic import ValidationError
from pymatgen.core import Lattice, Structure

from conf.dft import CP2KSettings, DFTConfig, SlurmSettings
from tasks.dft.backends import JobState, SlurmBackend
from tasks.dft.calc import drive
from tasks.dft.inputs import DFTInputError, basis_and_potential, cp2k_settings_hash, spin_polarized
from tasks.dft.run import DFTOutcome
from tasks.dft.select import formation_energy_per_atom, lowest_elemental_phases, mean_absolute_error, select_for_dft
from tasks.errors import EvaluationError, StoreError
from tasks.store import Store

CP2K_DATA = Path("/usr/share/cp2k")


def _pool():
    return [dict(hash="a", e_above_hull=0.05, novel=False, nsites=4), dict(hash="b", e_above_hull=0.05, novel=True,
            nsites=4), dict(hash="c", e_above_hull=0.0, novel=False, nsites=20),
            dict(hash="d", e_above_hull=0.5, novel=True, nsites=2), dict(hash="e", e_above_hull=0.01, novel=True,
            nsites=6), dict(hash="f", e_above_hull=None, novel=True, nsites=2)]


def test_selection_orders_by_ehull_then_novelty_and_respects_budgets():
    assert select_for_dft(_pool(), set(), 3, 10, 0.3, 8) == ["e", "b", "a"]  # c too big, d too high, f no value
    assert select_for_dft(_pool(), {"e"}, 2, 10, 0.3, 8) == ["b", "a"]  # already computed: skipped
    assert select_for_dft(_pool(), set(), 3, 1, 0.3, 8) == ["e"]  # campaign budget left: 1
    assert select_for_dft(_pool(), set(), 3, 0, 0.3, 8) == []
    assert select_for_dft(_pool(), set(), 5, 10, 0.3, 24)[0] == "c"


def test_formation_energy_and_mae():
    assert formation_energy_per_atom("MgO", -5.0, {"Mg": -2.0, "O": -4.0}) == pytest.approx(-2.0)
    assert formation_energy_per_atom("Mg2O2", -5.0, {"Mg": -2.0, "O": -4.0}) == pytest.approx(-2.0)
    with pytest.raises(EvaluationError, match=r"\['O'\]"):
        formation_energy_per_atom("MgO", -5.0, {"Mg": -2.0})
    assert mean_absolute_error([(1.0, 0.5), (0.0, 1.0)]) == pytest.approx(0.75)
    assert mean_absolute_error([]) is None
    rows = [("mg1", "Mg2", -1.5, "s1"), ("mg2", "Mg", -1.6, "s2"), ("mgo", "MgO", -6.0, "s3"), ("o", "O2", -4.9, "s4")]
    assert lowest_elemental_phases(rows) == {"Mg": ("mg2", "s2"), "O": ("o", "s4")}


def test_settings_hash_tracks_only_energy_settings():
    base = cp2k_settings_hash(CP2KSettings())
    assert base == cp2k_settings_hash(CP2KSettings(max_scf=400, command="/opt/cp2k/bin/cp2k.psmp"))
    assert base != cp2k_settings_hash(CP2KSettings(cutoff=400)) != cp2k_settings_hash(CP2KSettings(kpoints_per_atom=64))


def test_spin_polarisation_follows_magnetic_elements():
    nacl = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    feo = Structure(Lattice.cubic(4.3), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert not spin_polarized(nacl, CP2KSettings()) and spin_polarized(feo, CP2KSettings())
    assert not spin_polarized(feo, CP2KSettings(spin_polarized="no"))


@pytest.mark.skipif(not (CP2K_DATA / "BASIS_MOLOPT").is_file(), reason="cp2k-data is not installed")
def test_basis_and_potential_per_element_and_one_clear_error_for_missing():
    bp = basis_and_potential(["Mg", "O", "Si"], CP2KSettings())
    assert bp["O"] == {"basis": "DZVP-MOLOPT-SR-GTH", "potential": "GTH-PBE-q6", "aux_basis": None}
    assert bp["Mg"]["potential"] == "GTH-PBE-q10" and bp["Si"]["potential"] == "GTH-PBE-q4"
    with pytest.raises(DFTInputError, match=r"\['Pu'\]"):
        basis_and_potential(["Mg", "Pu"], CP2KSettings())


@pytest.mark.skipif(not (CP2K_DATA / "BASIS_MOLOPT").is_file(), reason="cp2k-data is not installed")
def test_pruned_pmg_data_writes_the_same_cp2k_input_as_the_full_folder(tmp_path, monkeypatch):
    from tasks.dft.inputs import cp2k_maker
    from tasks.dft.pmg_data import ensure_pmg_data_dir, prune

    settings = CP2KSettings()
    full = ensure_pmg_data_dir(settings)
    pruned = tmp_path / "pruned"
    structure = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
    prune(settings, full, pruned, ["Mg", "O"])
    assert sorted(p.name for p in pruned.iterdir()) == ["Mg", "O"]
    assert (pruned / "O").stat().st_size < (full / "O").stat().st_size / 10
    inputs = {}
    for label, folder in (("full", full), ("pruned", pruned)):
        monkeypatch.setenv("CP2K_DATA_DIR", str(folder))  # pymatgen reads it at call time
        maker = cp2k_maker(structure, settings)
        inputs[label] = maker.input_set_generator.get_input_set(structure).cp2k_input.get_str()
    assert inputs["pruned"] == inputs["full"] and "DZVP-MOLOPT-SR-GTH" in inputs["full"]


def test_config_rejects_vasp_locally_and_unsafe_slurm_values():
    with pytest.raises(ValidationError, match="vasp"):
        DFTConfig(backend="local", code="vasp")
    for bad in ({"partition": "debug; rm -rf /"}, {"extra_directives": ["--qos=x\n#SBATCH --uid=0"]},
                {"extra_directives": ["-p x"]}, {"modules": ["cp2k && curl x"]}, {"walltime": "1 hour"}):
        with pytest.raises(ValidationError):
            SlurmSettings(**bad)


def test_sbatch_is_an_argument_list_and_the_script_quotes_everything(tmp_path):
    calc_dir = tmp_path / "dir with space; $(x)"
    calc_dir.mkdir()
    backend = SlurmBackend(SlurmSettings(partition="debug", account="mat-1", cores=2, memory="3G",
                                         walltime="01:00:00", modules=["cp2k/2023.1"], extra_directives=["--qos=hi"]))
    args = backend.sbatch_args(calc_dir, "element:O'; x")
    assert args[:2] == ["sbatch", "--parsable"] and args[-1] == str(calc_dir / "job.sh")
    assert {"--partition=debug", "--account=mat-1", "--cpus-per-task=2", "--mem=3G", "--time=01:00:00",
            "--qos=hi", f"--chdir={calc_dir}"} <= set(args)
    assert "--job-name=matloop-element_O___x" in args
    script = backend.job_script(calc_dir, {"PMG_CP2K_DATA_DIR": "/data/it's here"})
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash" and "module load cp2k/2023.1" in lines
    assert f"export PMG_CP2K_DATA_DIR={shlex.quote('/data/it' + chr(39) + 's here')}" in lines
    assert shlex.split(lines[-1])[2:] == ["-m", "tasks.dft.worker", str(calc_dir)]


# ---- the state machine on a real store, with a scripted scheduler ------------------------------------------
class FakeScheduler:
    """Plays back job states; writes a result when told to (what a worker would do)."""

    def __init__(self, states, result: DFTOutcome | None = None, calc_dir: Path | None = None):
        self.states, self.result, self.submitted, self.calc_dir = list(states), result, [], calc_dir

    def submit(self, calc_dir, env, name):
        self.submitted.append(calc_dir)
        return f"job{len(self.submitted)}"

    def state(self, job_id):
        st = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if st.state == "finished" and self.result is not None:
            (Path(self.submitted[-1] if self.submitted else self.calc_dir) / "result.json").write_text(
                self.result.model_dump_json())
        return st

    def cancel(self, job_id):
        pass

    def find(self, calc_dir):
        return self.found


FakeScheduler.found = None


def _queue(store: Store, tmp_path: Path, label="h1") -> int:
    s = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return store.queue_dft([dict(campaign_id="c1", label=label, kind="candidate", round_index=0,
                                 structure=json.dumps(s.as_dict()), settings={"code": "cp2k"},
                                 settings_hash="cp2k-x", backend="slurm", calc_dir=str(tmp_path / label))])[0]


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 's.db'}")


def _drive(store, calc_id, fake, monkeypatch):
    monkeypatch.setattr("tasks.dft.calc.backend_for", lambda name, cfg: fake)
    monkeypatch.setattr("tasks.dft.calc.dft_environment", lambda settings, code: {})
    return drive(store, calc_id, DFTConfig(), poll_s=0.0)


def test_completed_run_walks_every_state(store, tmp_path, monkeypatch):
    cid = _queue(store, tmp_path)
    assert _queue(store, tmp_path) == cid  # queueing is idempotent
    ok = DFTOutcome(status="completed", energy=-10.0, energy_per_atom=-5.0, scf_converged=True, wall_time_s=3.0,
                    code_version="CP2K 2023.1")
    fake = FakeScheduler([JobState("pending"), JobState("running"), JobState("finished", "COMPLETED")], ok)
    row = _drive(store, cid, fake, monkeypatch)
    assert (row.state, row.energy_per_atom, row.job_id, row.code_version) == ("completed", -5.0, "job1", "CP2K 2023.1")
    assert len(fake.submitted) == 1 and (Path(row.calc_dir) / "calc.json").is_file()
    assert _drive(store, cid, FakeScheduler([JobState("gone")]), monkeypatch).state == "completed"  # final: untouched


def test_vanished_job_is_lost_and_cancelled_one_too_then_rerunnable(store, tmp_path, monkeypatch):
    cid = _queue(store, tmp_path)
    row = _drive(store, cid, FakeScheduler([JobState("running"), JobState("gone")]), monkeypatch)
    assert row.state == "lost" and "vanished" in row.reason
    store.requeue_dft(cid, {"code": "cp2k", "max_scf": 99}, "cp2k-x", "slurm")
    row = store.dft_calc(cid)
    assert row.state == "queued" and row.history[0]["state"] == "lost" and row.history[0]["job_id"] == "job1"
    row = _drive(store, cid, FakeScheduler([JobState("finished", "CANCELLED")]), monkeypatch)
    assert row.state == "lost" and "CANCELLED" in row.reason
    row = _drive(store, _queue(store, tmp_path, "h2"), FakeScheduler([JobState("finished", "TIMEOUT")]), monkeypatch)
    assert row.state == "failed" and "TIMEOUT" in row.reason


def test_reattaches_to_a_submitted_job_without_submitting_again(store, tmp_path, monkeypatch):
    cid = _queue(store, tmp_path)
    assert store.transition(cid, "submitted", "queued")
    store.set_dft_job(cid, "4242")
    Path(tmp_path / "h1").mkdir()
    ok = DFTOutcome(status="completed", energy=-1.0, energy_per_atom=-0.5)
    fake = FakeScheduler([JobState("unknown", "slurmctld restarting"), JobState("running"), JobState("finished")], ok,
                         calc_dir=tmp_path / "h1")
    row = _drive(store, cid, fake, monkeypatch)
    assert row.state == "completed" and row.job_id == "4242" and fake.submitted == []


def test_transitions_are_compare_and_set_and_validated(store, tmp_path):
    cid = _queue(store, tmp_path)
    assert store.transition(cid, "submitted", "queued")
    assert not store.transition(cid, "submitted", "queued")  # a second claimer loses
    with pytest.raises(StoreError, match="allowed: queued, submitted"):
        store.transition(cid, "done")
    with pytest.raises(StoreError, match="only completed, failed, lost"):
        store.requeue_dft(cid, {}, "cp2k-x", "slurm")
    assert store.transition(cid, "completed", "submitted")
    with pytest.raises(StoreError, match="no transition"):
        store.transition(cid, "queued", "completed")  # final states stay final (requeue_dft keeps the history)
    with pytest.raises(StoreError, match="allowed"):
        store.dft_calcs("c1", ["bogus"])


@pytest.mark.parametrize("found, left_result, submissions", [("job7", False, 0), (None, True, 0), (None, False, 1)])
def test_a_submission_cut_short_is_found_by_its_folder_or_made_again_once(store, tmp_path, monkeypatch, found,
                                                                          left_result, submissions):
    cid = _queue(store, tmp_path)
    assert store.transition(cid, "submitted", "queued")  # claimed; the claimer died before recording a job id
    calc_dir = tmp_path / "h1"
    calc_dir.mkdir()
    ok = DFTOutcome(status="completed", energy=-1.0, energy_per_atom=-0.5)
    if left_result:  # the job ran and left the queue before anyone looked
        (calc_dir / "result.json").write_text(ok.model_dump_json())
    fake = FakeScheduler([JobState("running"), JobState("finished")], ok, calc_dir=calc_dir)
    fake.found = found
    monkeypatch.setattr("tasks.dft.calc._wait_for_job_id", lambda store, row, poll: False)
    row = _drive(store, cid, fake, monkeypatch)
    assert row.state == "completed" and len(fake.submitted) == submissions
    assert row.job_id == {"job7": "job7", None: "job1" if submissions else None}[found]


def test_atomate2_parsing_fix_is_scoped_and_only_applied_while_upstream_is_broken():
    import atomate2.cp2k.schemas.calculation as calc

    from tasks.dft.run import atomate2_cp2k_needs_dft_fix, cp2k_parsing_fix

    original = calc.CalculationInput
    broken = atomate2_cp2k_needs_dft_fix()
    with cp2k_parsing_fix():
        patched = calc.CalculationInput
        # a non-spin-polarised run's DFT section parses inside the context
        assert patched.cleanup_dft({"Multiplicity": 1, "Spin-polarized": "RKS"}) is not None
    assert calc.CalculationInput is original  # restored afterwards
    assert (patched is not original) == broken


def test_leaked_dft_tag_slots_are_released(prefect_server):
    """Slots a killed run left taken (no running holder) are given back when a DFT stage starts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from flows.dft import ensure_tag_limit

    ensure_tag_limit("dft-leak-test", 2)
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit("tag:dft-leak-test", GlobalConcurrencyLimitUpdate(active_slots=2))
        assert client.read_global_concurrency_limit_by_name("tag:dft-leak-test").active_slots == 2
    ensure_tag_limit("dft-leak-test", 2)
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("tag:dft-leak-test")
        assert limit.active_slots == 0 and limit.limit == 2


def test_prefork_server_forks_each_calculation_and_records_exit_codes(tmp_path):
    """Two calculations through one pre-forking server (no CP2K needed: a broken calc.json makes the worker
    write a failed result); a stale exit file from an earlier attempt is cleared on submission."""
    import time as _time

    from tasks.dft.backends import LocalBackend
    from tasks.dft.prefork import EXIT_FILE, socket_path
    from tasks.dft.worker import read_result

    backend = LocalBackend(timeout_s=120, prefork=True)
    env = {"MATLOOP_TEST_PREFORK": str(tmp_path)}  # an environment of its own: a server of its own
    jobs = []
    for name in ("a", "b"):
        calc_dir = tmp_path / name
        calc_dir.mkdir()
        (calc_dir / "calc.json").write_text("{not json")
        (calc_dir / EXIT_FILE).write_text("9")  # left over from an earlier attempt
        jobs.append((calc_dir, backend.submit(calc_dir, env, name)))
    assert socket_path(env).exists() and jobs[0][1] != jobs[1][1]
    _check_only_its_user_reaches_the_server(socket_path(env), tmp_path / "a")
    for calc_dir, job in jobs:
        deadline = _time.monotonic() + 60
        while (state := backend.state(job)).state == "running" and _time.monotonic() < deadline:
            _time.sleep(0.2)
        assert state == ("finished", "worker exit code 0")
        outcome = read_result(calc_dir)
        assert outcome.status == "failed" and "worker error" in outcome.reason


def _check_only_its_user_reaches_the_server(sock, calc_dir):
    """The socket sits in a 0700 folder and is 0600 itself; a peer of another user that gets to it anyway (the
    folder opened on purpose here) is refused by the server (SO_PEERCRED), so it cannot run a calc.json."""
    import os
    import stat

    from tasks.dft import prefork

    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700 and stat.S_IMODE(sock.stat().st_mode) == 0o600
    if os.getuid() != 0:
        return  # only root can become another user to try
    os.chmod(sock.parent, 0o755)
    os.chmod(sock, 0o777)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read)
            try:
                os.setgid(65534)
                os.setuid(65534)
                message = f"started {prefork.request(sock, calc_dir)}"
            except OSError as exc:
                message = str(exc)
            os.write(write, message.encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        message = os.read(read, 1000).decode()
        os.close(read)
    finally:
        os.chmod(sock.parent, 0o700)
        os.chmod(sock, 0o600)
    assert "refused: not the server's user" in message


def test_the_prefork_folder_must_be_private(tmp_path, monkeypatch):
    import tempfile

    from tasks.dft.prefork import private_dir

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    assert private_dir().stat().st_mode & 0o777 == 0o700
    private_dir().chmod(0o755)  # e.g. made by someone else, or by hand
    with pytest.raises(PermissionError, match="mode 0700"):
        private_dir()


BAND_FILE_TEXT = """# Set 1: 2 special points, 2 k-points, 4 bands
#  Point 1      Spin 1:    0.0 0.0 0.0       0.5
#   Band    Energy [eV]     Occupation
       1   -10.0     2.00000000
       2     1.5     2.00000000
       3     5.0     0.00000000
       4     9.0     0.00000000
#  Point 2      Spin 1:    0.5 0.0 0.0       0.5
#   Band    Energy [eV]     Occupation
       1    -9.0     2.00000000
       2     2.0     {occ}
       3     4.2     {empty}
       4     8.0     0.00000000
"""


def test_band_gap_is_read_over_every_k_point_and_is_zero_for_a_metal(tmp_path):
    import gzip

    from tasks.dft.bands import BandFileError, band_gap_from_bs

    insulator = tmp_path / "KS_LEVELS.bs.gz"
    with gzip.open(insulator, "wt") as fh:  # atomate2 gzips a finished job's files
        fh.write(BAND_FILE_TEXT.format(occ="2.0", empty="0.0"))
    assert band_gap_from_bs(insulator) == pytest.approx(4.2 - 2.0)  # indirect: VBM at point 2, CBM at point 2
    metal = tmp_path / "metal.bs"
    metal.write_text(BAND_FILE_TEXT.format(occ="0.3", empty="1.7"))  # smeared occupations across E_F
    assert band_gap_from_bs(metal) == 0.0
    crossing = tmp_path / "crossing.bs"  # band 2 filled at point 1 and empty at point 2: a metal on a coarse mesh
    crossing.write_text(BAND_FILE_TEXT.format(occ="0.0", empty="0.0").replace("2.0     0.0", "3.0     0.0"))
    assert band_gap_from_bs(crossing) == 0.0
    spin = tmp_path / "spin.bs"  # spin-polarised: occupations of 1
    spin.write_text(BAND_FILE_TEXT.replace("2.00000000", "1.00000000").format(occ="1.0", empty="0.0"))
    assert band_gap_from_bs(spin) == pytest.approx(2.2)
    broken = tmp_path / "broken.bs"
    broken.write_text("# nothing\n  1  x  2\n")
    with pytest.raises(BandFileError, match="not a band line"):
        band_gap_from_bs(broken)


def test_static_cp2k_input_prints_the_levels_at_the_irreducible_scf_k_points(monkeypatch):
    from pymatgen.io.vasp.inputs import Kpoints

    from tasks.dft.bands import BAND_FILE, mesh_points, with_gamma
    from tasks.dft.inputs import cp2k_maker
    from tasks.dft.pmg_data import ensure_pmg_data_dir

    settings = CP2KSettings()
    monkeypatch.setenv("CP2K_DATA_DIR", str(ensure_pmg_data_dir(settings)))
    mgo = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
    mgo = mgo.get_primitive_structure()
    text = cp2k_maker(mgo, settings).input_set_generator.get_input_set(mgo).cp2k_input.get_str()
    band = text[text.index("&BAND_STRUCTURE"):text.index("&END BAND_STRUCTURE")]
    assert f"FILE_NAME {BAND_FILE}" in band and "UNITS B_VECTOR" in band and "NPOINTS 1" in band
    points = mesh_points(mgo, Kpoints.automatic_density(mgo, settings.kpoints_per_atom * len(mgo)))
    assert band.count("SPECIAL_POINT") == len(points.kpts) > 1 and sum(points.kpts_weights) == 8  # 2x2x2 mesh
    assert [0.0, 0.0, 0.0] in [list(k) for k in points.kpts]  # a Gamma-centred mesh holds Gamma
    shifted = mesh_points(mgo, Kpoints.monkhorst_automatic((2, 2, 2)))  # Monkhorst-Pack even: no Gamma
    assert [0.0, 0.0, 0.0] not in [list(k) for k in shifted.kpts]
    assert with_gamma(points) is points  # Gamma is there already
    added = with_gamma(shifted)  # the band print adds it: a gap at Gamma is not missed
    assert list(added.kpts[-1]) == [0.0, 0.0, 0.0] and added.kpts_weights[-1] == 0 and len(added.kpts) == \
        len(shifted.kpts) + 1 and sum(added.kpts_weights) == sum(shifted.kpts_weights)
    for off in (CP2KSettings(band_gap=False), CP2KSettings(calculation="relax")):
        assert "BAND_STRUCTURE" not in cp2k_maker(mgo, off).input_set_generator.get_input_set(mgo).cp2k_input.get_str()


def test_a_local_worker_whose_pid_was_never_recorded_is_found_by_its_folder(tmp_path):
    import socket
    import subprocess
    import sys

    from tasks.dft.backends import LocalBackend

    calc_dir = tmp_path / "calc"
    (calc_dir / "job_1").mkdir(parents=True)
    # what the store cannot say after a kill: a worker (its command line names tasks.dft.worker) busy in the folder
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "tasks.dft.worker"],
                              cwd=calc_dir / "job_1")
    try:
        backend = LocalBackend()
        assert backend.find(calc_dir) == f"{socket.gethostname()}:{worker.pid}"
        assert backend.state(backend.find(calc_dir)).state == "running"
        assert backend.find(tmp_path / "other") is None
    finally:
        worker.kill()
        worker.wait()
    assert LocalBackend().find(calc_dir) is None
