"""Does the microstructure loop reach a target property band in fewer evaluations than random process conditions?

Arms, same budget (``rounds x per_round`` conditions, ``images_per_condition`` generated images each), same
generator, same seeds: ``band`` (the campaign's acquisition: a Gaussian process over the conditions and the
probability of landing in the band) and ``random`` (uniform conditions in the same box: the control). Each arm
runs as a real ``matloop micro run`` campaign (Prefect flows, SQLite store, taufactor).

Held-out truth: the generator's word is not taken. Every condition an arm evaluated is simulated again by the
physical model the generator learned from (the same Cahn–Hilliard or porespy settings, fresh seeds) and its
property computed the same way; a *true hit* is a condition whose simulated mean property lies in the band.
Reported per arm: evaluations to the first true hit (budget + 1 when none), true hits within the budget, and the
precision of the generator's hits (true hits among the conditions the generated images put in the band).

    python benchmarks/micro_loop.py --generator microbench/micro-gan.pt --seeds 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from conf.micro import MicroDataConfig
from conf.micro_campaign import MicroCampaignConfig
from flows.micro_cmd import load_micro_config
from models.checkpoint import load_checkpoint
from tasks.micro.judge import condition_value, image_property, image_validity, in_band
from tasks.store import Store

ROOT = Path(__file__).resolve().parents[1]


def truth(data_cfg: MicroDataConfig, condition: dict[str, float], cfg: MicroCampaignConfig, n: int,
          seed: int) -> float | None:
    """The condition's property from the physical model itself (``n`` fresh images), judged as the campaign
    judges generated ones."""
    from tasks.micro.dataset import _simulate

    images = _simulate(data_cfg.source, condition, n, data_cfg.size, seed=seed)
    values = [image_property(i, cfg.target.property) if image_validity(i, cfg.validity.volume_fraction) is True
              else None for i in images]
    return condition_value(values, cfg.target.property)[0]


def run_arm(base: MicroCampaignConfig, function: str, seed: int, workdir: Path) -> tuple[str, str]:
    from flows.micro_campaign import micro_campaign, start_micro_campaign

    out = workdir / f"{function}-s{seed}"
    cfg = base.model_copy(update={"acquisition": base.acquisition.model_copy(update={"function": function}),
                                  "seed": seed, "output_dir": out, "store_url": None,
                                  "name": f"micro-loop:{function}:s{seed}"})
    cid = start_micro_campaign(cfg)
    micro_campaign(cfg.url(), cid)
    return cfg.url(), cid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=ROOT / "conf" / "micro_campaign.yaml")
    parser.add_argument("--set", action="append", default=[], help="Override: dotted.key=value.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--truth-images", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=Path("microloop"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "micro_loop.json")
    args = parser.parse_args()
    from flows.server import prefect_api

    base = load_micro_config(args.config, [f"generator={args.generator}", *args.set], MicroCampaignConfig)
    data_cfg = MicroDataConfig.model_validate(load_checkpoint(args.generator)["data_config"])
    if data_cfg.source.kind == "folder":
        raise SystemExit("the truth needs the physical model: a generator trained on simulated images")
    budget = base.rounds * base.per_round
    result = {"config": base.model_dump(mode="json", exclude={"store_url"}), "budget": budget, "truth_images": args.truth_images,
              "arms": {}}
    with prefect_api():
        for function in ("band", "random"):
            runs = []
            for seed in range(args.seeds):
                start = time.perf_counter()
                url, cid = run_arm(base, function, seed, args.workdir)
                rows = Store(url).micro_evaluations(cid)
                evaluations = []
                for i, e in enumerate(rows):
                    true = truth(data_cfg, e.conditions, base, args.truth_images, seed=10_000 + 97 * seed + i)
                    evaluations.append({"round": e.round_index, "conditions": e.conditions, "source": e.source,
                                        "generated": e.mean, "generated_in_band": bool(e.in_band), "truth": true,
                                        "true_in_band": in_band(true, base.target.low, base.target.high)})
                true_hits = [i + 1 for i, e in enumerate(evaluations) if e["true_in_band"]]
                claimed = [e for e in evaluations if e["generated_in_band"]]
                runs.append({"seed": seed, "campaign": cid, "seconds": time.perf_counter() - start,
                             "first_true_hit": true_hits[0] if true_hits else budget + 1,
                             "true_hits": len(true_hits), "generated_hits": len(claimed),
                             "precision": (sum(e["true_in_band"] for e in claimed) / len(claimed)) if claimed else None,
                             "evaluations": evaluations})
                print(f"{function} seed {seed}: first true hit {runs[-1]['first_true_hit']}, true hits "
                      f"{len(true_hits)}/{budget}, generator's hits {len(claimed)}", flush=True)
            result["arms"][function] = {
                "first_true_hit_mean": float(np.mean([r["first_true_hit"] for r in runs])),
                "true_hits_mean": float(np.mean([r["true_hits"] for r in runs])),
                "precision_mean": float(np.mean([r["precision"] for r in runs if r["precision"] is not None]))
                if any(r["precision"] is not None for r in runs) else None, "runs": runs}
    band, rnd = result["arms"]["band"], result["arms"]["random"]
    result["ratios"] = {"first_true_hit_random_over_band": rnd["first_true_hit_mean"] / band["first_true_hit_mean"],
                        "true_hits_band_over_random": band["true_hits_mean"] / rnd["true_hits_mean"]
                        if rnd["true_hits_mean"] else None}
    print(f"first true hit: band {band['first_true_hit_mean']:.1f}, random {rnd['first_true_hit_mean']:.1f} "
          f"evaluations (x{result['ratios']['first_true_hit_random_over_band']:.2f}); true hits in {budget}: band "
          f"{band['true_hits_mean']:.2f}, random {rnd['true_hits_mean']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
