"""Shared fixtures: one Prefect test server per session, a tiny MACE model, micro-campaign configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# `make test` runs `pytest -n 2 --dist loadgroup`: each file is one xdist group (its module and session fixtures
# are built once, on the worker that runs it) and the files that submit jobs to the one single-node SLURM (two
# CPUs: jobs of two tests at once would queue behind each other) share a group, so they run on one worker in file
# order. PostgreSQL tests get a database of their own per worker (fresh_postgres_url), Prefect tests a test server
# per worker (prefect_test_harness) or per test (tests/prefect_server.py).
SLURM_FILES = {"test_dask_slurm", "test_dft_slurm"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group marks into the node ids
def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("xdist"):  # -p no:xdist: one process, nothing to group
        return
    for item in items:
        module = item.path.stem
        item.add_marker(pytest.mark.xdist_group("slurm" if module in SLURM_FILES else module))


def pytest_collection_finish(session):
    """Refuse to run ungrouped: a pytest/xdist pair that drops the groups silently (pytest-xdist #1386) would let
    two workers share SLURM's two CPUs."""
    if getattr(session.config.option, "loadgroup", False) and any("@" not in i.nodeid for i in session.items):
        raise pytest.UsageError("--dist loadgroup did not group the tests (pytest-xdist #1386 with pytest 9.2): "
                                "install the pinned pytest (pip install -c constraints.txt -e '.[test]')")


@pytest.fixture(autouse=True)
def _torch_default_dtype():
    """Torch's default dtype is process-wide and MACE leaves float64 set (tasks/mlip.py's gate sets it per
    calculation, also inside session fixtures that run campaigns): every test starts and ends with torch's own
    default, float32, so no test inherits another's (GAN and diffusion tests build float32 tensors)."""
    import torch

    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.fixture(scope="session")
def prefect_server():
    """One ``prefect_test_harness`` for the session; its URL is exported so worker processes use it too."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        yield url
        os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def tiny_mace(tmp_path_factory) -> Path:
    """A small MACE model trained in this session on CHGNet-labelled Mg-O data."""
    from tests.mace_tiny import train_tiny_mace

    return train_tiny_mace(tmp_path_factory.mktemp("mace"))


def micro_config(tmp: Path, **overrides):
    """A 2-round Mg-O micro-campaign on SQLite in ``tmp`` (CHGNet unless overridden)."""
    from conf.loader import validate_config

    data = {
        "name": "micro", "seed": 3, "rounds": 2, "output_dir": str(tmp / "campaigns"),
        "target": {"chemical_system": "Mg-O", "max_atoms": 8},
        "seeds": {"known_phases": [{"template": "NaCl", "species": {"Na": "Mg", "Cl": "O"}}], "max_sites": 12},
        "generator": {"name": "substitution", "n_per_round": 4},
        "relax": {"backend": "chgnet", "max_steps": 80, "chunk_size": 3, "fmax": 0.1},
        "runner": {"kind": "threads", "max_workers": 2},
    }
    for key, value in overrides.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return validate_config(data)


def fresh_postgres_url() -> str:
    """The PostgreSQL named by MATLOOP_TEST_POSTGRES_URL (.ci/postgres.sh), emptied and at today's schema; skips
    the test without it."""
    url = os.environ.get("MATLOOP_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MATLOOP_TEST_POSTGRES_URL is not set (.ci/postgres.sh starts a server)")
    from tasks.store import get_engine

    url = _worker_database(url)
    drop_postgres_tables(url)
    get_engine(url)  # creates today's tables, stamped with the head revision
    return url


def _worker_database(url: str) -> str:
    """Under pytest-xdist, the database ``<name>_<worker>`` beside the one ``url`` names (created if missing: the
    role needs CREATEDB, which .ci/postgres.sh grants), so two workers never empty each other's tables."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    from sqlalchemy import create_engine, make_url, text

    from tasks.store.secrets import adopt_credentials, connect_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    engine = create_engine(connect_url(adopt_credentials(url)), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.execute(text("select 1 from pg_database where datname = :n"), {"n": name}).scalar() is None:
                conn.execute(text(f'create database "{name}"'))
    finally:
        engine.dispose()
    return base._replace(database=name).render_as_string(hide_password=False)


def drop_postgres_tables(url: str) -> None:
    """Every table of the test database, matloop's version table included; engines cached before are dropped."""
    from sqlalchemy import MetaData, create_engine

    from tasks.store import get_engine
    from tasks.store.secrets import adopt_credentials, connect_url

    get_engine.cache_clear()
    engine = create_engine(connect_url(adopt_credentials(url)))
    meta = MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()


@pytest.fixture
def config_file(tmp_path) -> Path:
    """A Mg-O campaign file whose output (store included) goes to ``tmp_path / 'out'``."""
    import yaml

    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "output_dir": str(tmp_path / "out"),
                                    "target": {"chemical_system": "Mg-O", "max_atoms": 6}}))
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def _mgsio_training_file(tmp: Path) -> Path:
    """Mg-Si-O known phases + substitution proposals (<= 12 sites) as extxyz: a quick generator training set."""
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    from conf.generator import generator_config
    from conf.schema import SeedsConfig, TargetConfig
    from tasks.context import make_conditions
    from tasks.generators import build_generator
    from tasks.seedset import build_seed_set

    target = TargetConfig(chemical_system="Mg-Si-O", max_atoms=12)
    seeds = build_seed_set(SeedsConfig(), target)
    pool = build_generator(generator_config(), seeds).sample(40, make_conditions(target, 0), seed=0)
    structures = [s.structure for s in seeds.known_phases if len(s.structure) <= 12 and s.relax_cell]
    structures += [c.structure for c in pool]
    write(tmp / "train.extxyz", [AseAtomsAdaptor.get_atoms(s) for s in structures], format="extxyz")
    return tmp / "train.extxyz"


@pytest.fixture(scope="session")
def tiny_diffusion(tmp_path_factory) -> Path:
    """A small diffusion checkpoint trained in this session on Mg-Si-O structures (seconds, not a good model:
    enough for interface and campaign tests)."""
    from conf.training import TrainRunConfig
    from tasks.train import train_model

    tmp = tmp_path_factory.mktemp("diffusion")
    run = TrainRunConfig.model_validate({
        "data": [str(_mgsio_training_file(tmp))], "max_atoms": 12, "out": str(tmp / "tiny.pt"),
        "model": {"hidden_dim": 32, "num_layers": 2, "num_freqs": 4},
        "train": {"epochs": 60, "batch_size": 16, "lr": 2e-3, "checkpoint_every": 30}})
    return train_model(run)


@pytest.fixture(scope="session")
def tiny_gan(tmp_path_factory) -> Path:
    """A small GAN checkpoint trained in this session on the same Mg-Si-O set (seconds), collapse-monitored."""
    from conf.training import TrainRunConfig
    from tasks.train import train_model

    tmp = tmp_path_factory.mktemp("gan")
    run = TrainRunConfig.model_validate({
        "generator": "gan", "data": [str(_mgsio_training_file(tmp))], "max_atoms": 12, "out": str(tmp / "gan.pt"),
        "threads": 1, "model": {"hidden_dim": 32, "latent_dim": 16, "generator_layers": 2, "critic_layers": 2},
        "train": {"epochs": 60, "batch_size": 16, "checkpoint_every": 30},
        "collapse": {"every": 20, "n_samples": 32, "warmup": 20}})
    return train_model(run)
