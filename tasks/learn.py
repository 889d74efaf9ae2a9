"""Learning step: fine-tune the campaign's checkpoint generator on what the campaign found.

After evaluation and DFT, a diffusion or GAN generator is fine-tuned on the campaign's converged relaxations,
drawn with replacement with weight ``exp(-max(E_hull, 0) / T)`` (T = ``feedback.temperature``; best label: a
lab measurement, else the MLIP E_hull shifted by the DFT - MLIP formation-energy difference where DFT ran, else
the MLIP value), with a seeded sample of the campaign's seed structures replayed in every batch so the model
keeps its base distribution. The round's checkpoint is written under the campaign directory; its path and hash
go into the round summary, the next round samples from it (its hash is in every candidate's provenance) and a
resumed round reuses it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from prefect import task
from pymatgen.core import Structure

from conf.generator import CHECKPOINT_GENERATORS
from conf.schema import CampaignConfig
from tasks.errors import GeneratorError
from tasks.results import PropertyValue, TaskRecord


def best_labels(properties: Sequence[PropertyValue]) -> dict[str, dict[str, float]]:
    """Per candidate hash, its properties from the best source: lab > DFT > MLIP (``e_above_hull`` and
    ``formation_energy_per_atom`` in eV/atom; a DFT formation energy shifts the MLIP E_hull by the DFT - MLIP
    difference)."""
    by: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for p in properties:
        by[p.hash][p.source][p.name] = p.value
    out = {}
    for h, src in by.items():
        mlip, dft, lab = src.get("mlip", {}), src.get("dft", {}), src.get("lab", {})
        ef_key = "formation_energy_per_atom"
        ef = lab.get(ef_key, dft.get(ef_key, mlip.get(ef_key)))
        eh = mlip.get("e_above_hull")
        if eh is not None and ef_key in dft and ef_key in mlip:
            eh += dft[ef_key] - mlip[ef_key]
        eh = lab.get("e_above_hull", eh)
        other = {**mlip, **dft, **lab}  # any other property (band gap, ...): lab > DFT > MLIP
        out[h] = {**other, **{k: v for k, v in (("e_above_hull", eh), (ef_key, ef)) if v is not None}}
    return out


def weighted_draw(e_hulls: Sequence[float], n: int, temperature: float, seed: int) -> list[int]:
    """``n`` indices drawn with replacement, probability proportional to ``exp(-max(E_hull, 0) / T)``."""
    w = np.array([math.exp(-max(e, 0.0) / temperature) for e in e_hulls])
    if not len(w):
        return []
    return sorted(np.random.default_rng(seed).choice(len(w), size=n, replace=True, p=w / w.sum()).tolist())


def current_checkpoint(cfg: CampaignConfig, summaries: Sequence[tuple[int, dict]], round_index: int) -> Path:
    """The checkpoint round ``round_index`` samples from: the latest one a learn step wrote before it, else the
    configured one."""
    for r, summary in sorted(summaries, reverse=True):
        learned = (summary or {}).get("learn")
        if r < round_index and isinstance(learned, dict) and learned.get("checkpoint"):
            return Path(learned["checkpoint"])
    options = cfg.generator.options
    if options.checkpoint is None:
        raise GeneratorError(f"generator.{cfg.generator.name}.checkpoint is not set")
    from tasks.generators.fetch import resolve_checkpoint

    return resolve_checkpoint(options.checkpoint, options.checkpoint_sha256, cfg.generator.name)


def fine_tune_round(checkpoint: Path, found: Sequence[tuple[Structure, dict[str, float]]],
                    replay: Sequence[Structure], cfg: CampaignConfig, seed: int, out: Path) -> dict:
    """Fine-tune ``checkpoint`` on the weighted draw of ``found`` (structure, labels) with ``replay``; the
    summary of what was done."""
    from models.checkpoint import load_checkpoint
    from tasks.train import fine_tune

    t0 = time.time()
    base = load_checkpoint(checkpoint)
    names = list(base["model_config"].get("properties") or [])
    picks = weighted_draw([lab.get("e_above_hull", 0.0) for _, lab in found], cfg.learn.structures,
                          cfg.feedback.temperature, seed)
    structures = [found[i][0] for i in picks]
    props = (np.array([[found[i][1].get(n, np.nan) for n in names] for i in picks], dtype=float) if names else None)
    replay_props = np.full((len(replay), len(names)), np.nan) if names and replay else None
    out.parent.mkdir(parents=True, exist_ok=True)
    from tasks.mlip import float32_models

    with float32_models():
        fine_tune(checkpoint, structures, props, cfg.learn.epochs, out, replay=list(replay) or None,
                  replay_props=replay_props, replay_fraction=cfg.learn.replay_fraction if replay else 0.0)
    return {"checkpoint": str(out), "hash": load_checkpoint(out)["hash"], "from": base["hash"],
            "structures": len(picks), "distinct": len(set(picks)), "replay": len(replay), "epochs": cfg.learn.epochs,
            "wall_s": time.time() - t0}


@task(name="learn")
def learn_task(store_url: str, campaign_id: str, round_index: int) -> TaskRecord:
    """Fine-tune the generator after the round (or record why not) and advance the round to ``learned``."""
    from tasks.candidate import structure_from_json
    from tasks.context import relax_context, round_seed
    from tasks.store import Store

    start = time.time()
    store = Store(store_url)
    cfg, spec, shash = relax_context(store, campaign_id)
    name = cfg.generator.name
    why = (f"nothing to fine-tune (generator {name})" if name not in CHECKPOINT_GENERATORS
           else "off (feedback.enabled: false)" if not cfg.feedback.enabled
           else "off (learn.fine_tune: false)" if not cfg.learn.fine_tune else None)
    labels = best_labels(store.properties(campaign_id)) if why is None else {}
    found = [(structure_from_json(rel.final_structure), labels[c.hash])
             for c, rel in store.relaxations(campaign_id, spec.identity, shash)
             if rel.status == "converged" and c.round_index <= round_index and "e_above_hull" in labels.get(c.hash, {})]
    if why is None and not found:
        why = "no converged relaxation yet"
    if why is not None:
        store.advance_round(campaign_id, round_index, "learned", {"learn": why})
        return TaskRecord.since(start, compute_s=0.0)
    seed = round_seed(cfg.seed, round_index)
    seeds = store.seed_set(campaign_id)
    pool = [s.structure for s in (*seeds.templates, *seeds.known_phases)
            if s.structure.is_ordered and len(s.structure) <= cfg.target.max_atoms]
    rng = np.random.default_rng(seed)
    replay = [pool[i] for i in sorted(rng.choice(len(pool), size=min(cfg.learn.replay, len(pool)), replace=False))]
    checkpoint = current_checkpoint(cfg, [(r.index, r.summary) for r in store.rounds(campaign_id)], round_index)
    out = Path(store.campaign(campaign_id).campaign_dir) / "generator" / f"round-{round_index}.pt"
    summary = fine_tune_round(checkpoint, found, replay, cfg, seed, out)
    store.advance_round(campaign_id, round_index, "learned", {"learn": summary})
    return TaskRecord.since(start)
