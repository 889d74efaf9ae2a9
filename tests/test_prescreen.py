"""The matcher's prescreen never refuses a pair fit accepts, and the parallel batch dedupe decides as one process."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from conf.schema import MatcherConfig
from tasks.metrics.batch_dedupe import dedupe_batch, greedy_bucket
from tasks.metrics.matching import MatchIndex, make_matcher, reduce_structure
from tasks.metrics.prescreen import may_fit


def random_mgo(n: int, seed: int) -> list[Structure]:
    """Random symmetric MgO crystals (pyxtal, as the random generator): many share a lattice, few a structure."""
    from pyxtal import pyxtal

    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        z, group, crystal = int(rng.integers(1, 4)), int(rng.integers(2, 231)), pyxtal()
        try:
            crystal.from_random(3, group, ["Mg", "O"], [z, z], factor=1.1, random_state=int(rng.integers(2**31)))
        except Exception:  # noqa: BLE001 - Wyckoff-incompatible counts: another group
            continue
        if crystal.valid:
            out.append(crystal.to_pymatgen())
    return out


@pytest.fixture(scope="module")
def reduced():
    structures = random_mgo(36, seed=3)
    # near copies too, so that fit holds for some pairs: strained, rattled and rotated versions
    rng = np.random.default_rng(0)
    for s in structures[:12]:
        copy = s.copy()
        copy.apply_strain(rng.uniform(-0.04, 0.04, 3))
        copy.perturb(0.05, seed=1)
        axes = [1, 2, 0]  # the same crystal with its axes relabelled
        structures.append(Structure(Lattice(copy.lattice.matrix[axes]), copy.species, copy.frac_coords[:, axes]))
    return [reduce_structure(i, s) for i, s in enumerate(structures)]


def test_prescreen_never_refuses_a_pair_fit_accepts(reduced):
    cfg = MatcherConfig()
    matcher = make_matcher(cfg)
    fits = refused = pairs = 0
    for a in reduced:
        for b in reduced:
            if a is b or a.key != b.key:
                continue
            pairs += 1
            fit = matcher.fit(a.structure, b.structure, skip_structure_reduction=True)
            ok = may_fit(a, b, cfg)
            assert ok or not fit, (a.label, b.label)
            fits += fit
            refused += not ok
    assert fits >= 12  # the near copies, both ways
    assert refused > 0.5 * pairs  # and it spares fit most of the pairs


def test_the_vectorised_mappings_hold_every_basis_pymatgen_finds(reduced):
    """Every unimodular basis ``Lattice.find_all_mappings`` yields (what fit tries) is among the prescreen's."""
    from tasks.metrics.prescreen import _lattice_mappings

    cfg, compared = MatcherConfig(), 0
    for a in reduced[::3]:
        for b in reduced[::2]:
            if a.key != b.key:
                continue
            ours = {tuple(m.astype(int).ravel()) for m in _lattice_mappings(a, b, cfg)}
            for _, _, m in a.unit_lattice.find_all_mappings(b.unit_lattice, ltol=cfg.ltol, atol=cfg.angle_tol,
                                                            skip_rotation_matrix=True):
                if abs(abs(np.linalg.det(m)) - 1) < 0.5:
                    assert tuple(np.rint(m).astype(int).ravel()) in ours, (a.label, b.label)
                    compared += 1
    assert compared > 50


def test_disordered_sites_are_left_to_fit():
    s = Structure(Lattice.cubic(4.2), [{"Mg": 0.5, "Ca": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    red = reduce_structure("d", s)
    assert red.species is None and may_fit(red, red, MatcherConfig())


def test_batch_dedupe_in_processes_decides_as_one_process(reduced):
    cfg = MatcherConfig()
    earlier, batch = reduced[:20], reduced[20:]
    assert len({r.key for r in batch}) >= 2  # several buckets to spread
    seen = MatchIndex(cfg)
    for red in earlier:
        seen.add(red.label, red)
    one = dedupe_batch(batch, seen, cfg, workers=1)
    assert dedupe_batch(batch, seen, cfg, workers=2, min_parallel=1) == one
    # the greedy semantics: a match is an earlier structure or an accepted one earlier in the batch
    sequential = MatchIndex(cfg)
    for red in earlier:
        sequential.add(red.label, red)
    expected = []
    for red in batch:
        match = sequential.find(red, nearest_first=True)
        if match is None:
            sequential.add(red.label, red)
        expected.append(match)
    assert [m is None for m in one] == [m is None for m in expected]
    assert any(m is not None and m >= 20 for m in one)  # a copy of an earlier batch member is caught
    assert len(seen) == len(earlier)  # the index it read is not changed
    assert greedy_bucket([], [batch[0], batch[0]], cfg) == [None, batch[0].label]
