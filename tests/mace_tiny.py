"""Train a tiny MACE model on CHGNet-labelled Mg-O structures (real training, ~30-60 s on 2 CPU cores).

The tests need a MACE model without downloading one: we label rattled and strained Mg-O structures with the
CHGNet that ships in its wheel, write them as extended XYZ, and run ``mace_run_train`` on them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def _training_structures(rng: np.random.Generator):
    from ase import Atoms
    from ase.build import bulk

    base = [bulk("MgO", "rocksalt", a=4.21), bulk("MgO", "rocksalt", a=4.21, cubic=True),
            bulk("MgO", "wurtzite", a=3.3, c=5.2), bulk("MgO", "zincblende", a=4.6),
            bulk("MgO", "cesiumchloride", a=2.66), bulk("Mg", "hcp", a=3.21, c=5.21),
            bulk("Mg", "fcc", a=4.5)]
    for atoms in base:
        for _ in range(12):
            a = atoms.copy()
            strain = np.eye(3) + rng.normal(0, 0.04, (3, 3))
            a.set_cell(a.cell @ strain, scale_atoms=True)
            a.rattle(0.06, seed=int(rng.integers(1e6)))
            yield a
    for d in np.linspace(1.05, 1.5, 10):
        yield Atoms("O2", positions=[[5, 5, 5], [5, 5, 5 + d]], cell=[10, 10, 10], pbc=True)


def train_tiny_mace(workdir: Path, seed: int = 0) -> Path:
    """Label structures with CHGNet, train a small MACE, return the model file path."""
    from ase.io import write
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    workdir.mkdir(parents=True, exist_ok=True)
    calc = CHGNetCalculator(model=CHGNet.load(verbose=False), use_device="cpu")
    frames = []
    for atoms in _training_structures(np.random.default_rng(seed)):
        atoms.calc = calc
        atoms.info["REF_energy"] = float(atoms.get_potential_energy())
        atoms.arrays["REF_forces"] = np.asarray(atoms.get_forces(), dtype=float)
        atoms.info["REF_stress"] = np.asarray(atoms.get_stress(voigt=False), dtype=float).reshape(9)
        atoms.calc = None
        frames.append(atoms)
    train = workdir / "train.extxyz"
    write(train, frames, format="extxyz")
    cmd = [str(Path(sys.executable).with_name("mace_run_train")), "--name=tiny", f"--train_file={train}",
           "--valid_fraction=0.1", "--energy_key=REF_energy", "--forces_key=REF_forces",
           "--stress_key=REF_stress", "--compute_stress=True", "--stress_weight=10", "--E0s=average",
           "--model=MACE", "--num_channels=16", "--max_L=0", "--r_max=4.0", "--num_interactions=2",
           "--correlation=2", "--max_num_epochs=25", "--batch_size=8", "--device=cpu", f"--seed={seed}",
           "--default_dtype=float64", "--eval_interval=5", f"--model_dir={workdir}",
           f"--checkpoints_dir={workdir / 'ckpt'}", f"--results_dir={workdir / 'results'}",
           f"--log_dir={workdir / 'logs'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    model = workdir / "tiny.model"
    if proc.returncode != 0 or not model.is_file():
        raise RuntimeError(f"mace_run_train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return model


def tiny_mace_model(workdir: Path) -> str:
    """Path of the tiny MACE under ``workdir/mace``, trained there the first time (the benchmarks' default model)."""
    model = workdir / "mace" / "tiny.model"
    return str(model if model.is_file() else train_tiny_mace(model.parent))
