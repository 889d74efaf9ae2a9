"""The validity filter: composition, geometry, allowed elements, novelty and duplicates.

Pure functions; :func:`filter_batch` turns one round's proposals into one verdict each, with every reason a
structure was rejected.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

import numpy as np
from prefect import task
from pymatgen.core import Structure

from conf.schema import FilterConfig
from tasks.candidate import Candidate
from tasks.metrics.batch_dedupe import dedupe_batch
from tasks.metrics.matching import MatchIndex, Reduced, ReducedCache, reduce_structure
from tasks.metrics.validity import composition_valid, structure_valid
from tasks.results import FilterVerdict, Rejection, TaskRecord

# earlier candidates' reduced cells, by hash, kept between the rounds a process filters (tasks/metrics/matching.py)
REDUCED = ReducedCache(max_size=20_000)


def geometry_rejections(structure: Structure, cfg: FilterConfig) -> list[Rejection]:
    """Distance (hard floor and covalent-radius-scaled), volume-per-atom and density checks."""
    from ase.data import covalent_radii

    out = []
    # A collapsed cell (an atom closer to its own periodic image than the floor, or almost no volume per atom)
    # is rejected before a neighbour list, whose size grows as cutoff^3 / (V/N) and with the cell's skew:
    # the list is built on the LLL-reduced cell (same distances, fewest periodic images).
    reduced = structure.get_reduced_structure(reduction_algo="LLL")
    radii = np.array([covalent_radii[site.specie.Z] for site in reduced])
    cutoff = max(cfg.min_distance, cfg.covalent_scale * 2 * radii.max())
    m = reduced.lattice.matrix
    heights = reduced.volume / np.linalg.norm(np.cross(m[[1, 2, 0]], m[[2, 0, 1]]), axis=1)
    if heights.min() < cfg.min_distance or reduced.volume / len(reduced) < 0.5:
        out.append(Rejection(check="min_distance", detail=f"collapsed cell: thinnest cell height "
                             f"{heights.min():.3f} Å, {reduced.volume / len(reduced):.3f} Å³/atom"))
        distances = np.array([])
    else:
        centers, neighbors, _, distances = reduced.get_neighbor_list(cutoff)
    if len(distances):
        k = int(np.argmin(distances))
        if distances[k] < cfg.min_distance:
            out.append(Rejection(check="min_distance", detail=f"atoms {centers[k]} and {neighbors[k]} are "
                                 f"{distances[k]:.3f} Å apart (< {cfg.min_distance} Å)"))
        if cfg.covalent_scale > 0:
            ratio = distances / (radii[centers] + radii[neighbors])
            j = int(np.argmin(ratio))
            if ratio[j] < cfg.covalent_scale:
                out.append(Rejection(check="covalent_distance", detail=(
                    f"{reduced[centers[j]].specie}-{reduced[neighbors[j]].specie} at {distances[j]:.3f} Å is "
                    f"{ratio[j]:.2f} x the covalent radii sum (< {cfg.covalent_scale})")))
    vpa = structure.volume / len(structure)
    if not cfg.volume_per_atom[0] <= vpa <= cfg.volume_per_atom[1]:
        out.append(Rejection(check="volume", detail=f"{vpa:.2f} Å³/atom outside {list(cfg.volume_per_atom)}"))
    rho = float(structure.density)
    if not cfg.density[0] <= rho <= cfg.density[1]:
        out.append(Rejection(check="density", detail=f"{rho:.2f} g/cm³ outside {list(cfg.density)}"))
    return out


def cheap_rejections(structure: Structure, cfg: FilterConfig, elements: Sequence[str],
                     max_atoms: int) -> list[Rejection]:
    """Every check that needs no comparison with other structures."""
    out = []
    outside = sorted({el.symbol for el in structure.composition.elements} - set(elements))
    if outside:
        out.append(Rejection(check="elements", detail=f"{outside} not in the system {list(elements)}"))
    if len(structure) > max_atoms:
        out.append(Rejection(check="max_atoms", detail=f"{len(structure)} sites > {max_atoms}"))
    out.extend(geometry_rejections(structure, cfg))
    if cfg.charge_neutrality and not composition_valid(structure.composition):
        out.append(Rejection(check="charge_neutrality",
                             detail=f"{structure.composition.reduced_formula} fails SMACT neutrality/"
                                    "electronegativity"))
    return out


def filter_batch(proposals: Sequence[tuple[int, Candidate]], round_index: int, cfg: FilterConfig,
                 elements: Sequence[str], max_atoms: int, references: MatchIndex,
                 seen: MatchIndex, workers: int = 1) -> list[FilterVerdict]:
    """One verdict per proposal, in order.

    Parameters
    ----------
    proposals
        ``(first round the structure was proposed in, candidate)`` for each proposal of the round.
    references
        Seed/training structures: a match means "not novel".
    seen
        Structures the campaign proposed in earlier rounds; accepted structures of this batch are added to
        it as the batch is read, so later copies in the same batch count as duplicates.
    workers
        Processes for the dedupe of large batches (``tasks.metrics.batch_dedupe``); the verdicts do not depend
        on it.
    """
    rejected: dict[int, list[Rejection]] = {}
    matched: dict[int, str | None] = {}
    survivors: list[tuple[int, Reduced | None]] = []  # (position, reduced cell) of proposals left for dedupe
    batch_hashes: set[str] = set()
    for k, (first_round, cand) in enumerate(proposals):
        if first_round < round_index or cand.hash in batch_hashes:
            where = f"round {first_round}" if first_round < round_index else "this batch"
            rejected[k], matched[k] = [Rejection(check="duplicate", detail=f"identical structure proposed before "
                                                 f"in {where}")], cand.hash
            continue
        batch_hashes.add(cand.hash)
        rejections = cheap_rejections(cand.structure, cfg, elements, max_atoms)
        red = reduce_structure(cand.hash, cand.structure) if not rejections and (cfg.novelty or cfg.dedupe) else None
        if not rejections and cfg.novelty:
            matched[k] = references.find(red)
            if matched[k]:
                rejections.append(Rejection(check="novelty", detail=f"matches seed {matched[k]}"))
        if rejections:
            rejected[k] = rejections
        else:
            survivors.append((k, red))
    if cfg.dedupe and survivors:
        duplicates = dedupe_batch([red for _, red in survivors], seen, cfg.matcher, workers=workers)
        for (k, _), dup in zip(survivors, duplicates):
            if dup is not None:
                rejected[k], matched[k] = [Rejection(check="duplicate", detail=f"matches candidate {dup}")], dup
    for k, red in survivors:
        if k not in rejected:
            seen.add(proposals[k][1].hash, red or proposals[k][1].structure)
    return [FilterVerdict(hash=cand.hash, passed=k not in rejected, rejections=rejected.get(k, []),
                          matched_hash=matched.get(k)) for k, (_, cand) in enumerate(proposals)]


@task(name="filter")
def filter_task(store_url: str, campaign_id: str, round_index: int) -> TaskRecord:
    """Filter a round's proposals against the seeds and every earlier candidate; store the verdicts."""
    from tasks.context import make_conditions
    from tasks.store import Store

    start = time.time()
    store = Store(store_url)
    cfg = store.config(campaign_id)
    references = MatchIndex(cfg.filter.matcher)
    seeds = store.seed_set(campaign_id)
    for seed in {s.id: s for s in seeds.templates + seeds.known_phases}.values():
        references.add(seed.id, seed.structure)
    proposals = store.proposals(campaign_id, round_index)
    seen = MatchIndex(cfg.filter.matcher, cache=REDUCED)  # earlier candidates sharing a formula with this round's
    for h, structure in store.structures_before(campaign_id, round_index, [c.formula for _, _, c in proposals]):
        seen.add(h, structure)
    conditions = make_conditions(cfg.target, round_index)
    workers = cfg.runner.max_workers if cfg.runner.kind == "processes" else 1  # the flow's host: idle meanwhile
    verdicts = filter_batch([(first, cand) for _, first, cand in proposals], round_index, cfg.filter,
                            conditions.chemical_system, conditions.max_atoms, references, seen, workers=workers)
    reasons = Counter(rej.check for v in verdicts for rej in v.rejections[:1])
    n = max(len(proposals), 1)
    summary = {"accepted": sum(v.passed for v in verdicts), "rejected": sum(not v.passed for v in verdicts),
               "rejections_by_check": dict(reasons),
               # the field's metrics on this round's batch (same functions as `matloop evaluate`)
               "cdvae_validity": sum(composition_valid(c.structure.composition) and structure_valid(c.structure)
                                     for _, _, c in proposals) / n}
    store.save_verdicts(campaign_id, round_index, [(pid, v) for (pid, _, _), v in zip(proposals, verdicts)], summary)
    return TaskRecord.since(start)
