"""The benchmarks' split: a checkpoint's held-out crystals, or an external reference set it never saw."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from benchmarks.scoring import split_of
from tasks.errors import MatloopError


def _csv(path, ids, a0):
    rows = [{"material_id": i, "cif": Structure(Lattice.cubic(a0 + 0.1 * k), ["Na", "Cl"],
                                                [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif")}
            for k, i in enumerate(ids)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def checkpoint(tmp_path):
    data = _csv(tmp_path / "train.csv", ["t0", "t1", "t2", "t3"], 5.0)
    ckpt = tmp_path / "model.pt"
    ckpt.with_suffix(".holdout.json").write_text(json.dumps({"ids": ["t3"]}))
    return ckpt, {"data_paths": [str(data)]}


def test_held_out_ids_of_the_checkpoint(checkpoint):
    train, held = split_of(*checkpoint, max_atoms=20)
    assert list(train["id"]) == ["t0", "t1", "t2"] and list(held["id"]) == ["t3"]


def test_external_reference_replaces_the_holdout(checkpoint, tmp_path):
    ref = _csv(tmp_path / "ref.csv", ["r0", "r1"], 6.0)
    train, held = split_of(*checkpoint, max_atoms=20, reference=ref)
    assert list(train["id"]) == ["t0", "t1", "t2"]  # the checkpoint's own holdout stays out of training
    assert list(held["id"]) == ["r0", "r1"]
    assert held["structure"][1].lattice.a == pytest.approx(6.1)


def test_reference_seen_in_training_is_refused(checkpoint, tmp_path):
    ref = _csv(tmp_path / "ref.csv", ["r0", "t1"], 6.0)
    with pytest.raises(MatloopError, match="shares 1 id"):
        split_of(*checkpoint, max_atoms=20, reference=ref)
