"""A batch's greedy dedupe against earlier structures, with its independent buckets in worker processes.

Sequential semantics (what :func:`dedupe_batch` returns, whatever ``workers``): structures are read in order;
one is a duplicate when it fits an earlier stored structure or an *accepted* structure earlier in the batch
(nearest lattice first, the first fit is named), and accepted otherwise. ``fit`` is false across (reduced
formula, primitive size) buckets, so the buckets are independent: each is run whole by one worker, the most
expensive first, and the work done is the same as one process would do.
"""

from __future__ import annotations

import multiprocessing
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from conf.schema import MatcherConfig
from tasks.metrics.matching import MatchIndex, Reduced
from tasks.workers import skip_exit_collection


def greedy_bucket(earlier: Sequence[Reduced], queries: Sequence[Reduced], cfg: MatcherConfig) -> list[object | None]:
    """For each query of one bucket, in order: the label it duplicates, or None (then it joins the bucket)."""
    index = MatchIndex(cfg)
    for red in earlier:
        index.add(red.label, red)
    out = []
    for red in queries:
        match = index.find(red, nearest_first=True)  # any match rejects it: try the likeliest first
        if match is None:
            index.add(red.label, red)
        out.append(match)
    return out


def _cost(earlier: Sequence[Reduced], queries: Sequence[Reduced]) -> float:
    """Comparisons a bucket may need, times the sites a fit handles."""
    n_sites = queries[0].key[1]
    return len(queries) * (len(earlier) + len(queries) / 2) * n_sites ** 2


def dedupe_batch(queries: Sequence[Reduced], seen: MatchIndex, cfg: MatcherConfig, workers: int = 1,
                 min_parallel: int = 256) -> list[object | None]:
    """The label each query duplicates (a structure of ``seen`` or an earlier accepted query), or None.

    ``seen`` is not changed. Worker processes (spawned per call) are used for at least ``min_parallel`` queries
    in at least two buckets: below that, starting them costs more than they save.
    """
    by_key: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, red in enumerate(queries):
        by_key[red.key].append(i)
    jobs = [(key, seen.stored(key), [queries[i] for i in members]) for key, members in by_key.items()]
    jobs.sort(key=lambda job: -_cost(job[1], job[2]))
    out: list[object | None] = [None] * len(queries)
    if workers <= 1 or len(jobs) < 2 or len(queries) < min_parallel:
        results = [greedy_bucket(earlier, qs, cfg) for _, earlier, qs in jobs]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx,
                                 initializer=skip_exit_collection) as pool:
            futures = [pool.submit(greedy_bucket, earlier, qs, cfg) for _, earlier, qs in jobs]
            results = [f.result() for f in futures]
    for (key, _, _), matches in zip(jobs, results):
        for i, match in zip(by_key[key], matches):
            out[i] = match
    return out
