"""GAN vs diffusion, side by side in one run: the same held-out crystals, metrics and sampling batch.

    matloop train --config conf/train_perov5.yaml          # diffusion checkpoint
    matloop train --config conf/train_gan_perov5.yaml      # GAN checkpoint (same data, same held-out split)
    python benchmarks/generators.py --gan checkpoints/gan_perov5.pt --diffusion checkpoints/perov5.pt \\
        --dataset perov5 --n 1000

Each model draws ``n`` crystals (diffusion at its fast setting, 200 steps) scored with CDVAE's protocol
against the held-out structures both checkpoints share (validity, uniqueness, COV-R/P, Wasserstein distances)
and for novelty against the training structures. Sampling speed: both models sample the same batch of atom
counts, timed in this run; the ratio diffusion/GAN is the GAN's speed-up (target >= 100x).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.scoring import add_common_args  # after ROOT is on sys.path


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gan", type=Path, required=True)
    parser.add_argument("--diffusion", type=Path, required=True)
    parser.add_argument("--dataset", choices=["perov5", "carbon24", "mp20"], required=True)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200, help="Diffusion sampling steps (fast setting).")
    parser.add_argument("--speed-batch", type=int, default=256)
    add_common_args(parser)
    args = parser.parse_args()

    import torch

    from benchmarks.scoring import data_baseline, ratios, save_samples, score, split_of, training_cost
    from models.api import draw_num_atoms, load_model, sample_batch, sample_structures
    from models.sampler import SamplerConfig

    torch.set_num_threads(args.threads)
    models = {"gan": load_model(args.gan, kind="gan"), "diffusion": load_model(args.diffusion, kind="diffusion")}
    splits = {name: split_of(path, models[name][1], args.max_atoms, args.reference)
              for name, path in (("gan", args.gan), ("diffusion", args.diffusion))}
    if any(set(splits["gan"][k]["id"]) != set(splits["diffusion"][k]["id"]) for k in (0, 1)):
        raise SystemExit("the two checkpoints were trained or are scored on different crystals; train both with "
                         "the same data, holdout and seed")
    train, held = splits["gan"]
    fast = SamplerConfig(steps=args.steps)

    counts = draw_num_atoms(models["gan"][1]["num_atoms_hist"], args.speed_batch, args.max_atoms,
                            torch.Generator().manual_seed(7))
    speed = {}
    for name, (model, _) in models.items():
        sample_batch(model, counts[:4], torch.Generator().manual_seed(0), fast)  # warm-up
        t = time.perf_counter()
        sample_batch(model, counts, torch.Generator().manual_seed(1), fast)
        seconds = time.perf_counter() - t
        speed[name] = {"seconds": seconds, "structures_per_s": len(counts) / seconds}
    speed["gan_speedup"] = speed["diffusion"]["seconds"] / speed["gan"]["seconds"]

    result = {"benchmark": "generators", "dataset": args.dataset, "date": datetime.now(timezone.utc).isoformat(),
              "n_train": len(train), "n_heldout": len(held), "reference": str(args.reference or "checkpoint holdout"),
              "n_generated": args.n, "cpus": os.cpu_count(),
              "diffusion_steps": args.steps, "speed_batch": len(counts), "speed": speed, "models": {}}
    for name, (model, ckpt) in models.items():
        t = time.perf_counter()
        samples = sample_structures(model, ckpt, args.n, 0, fast, max_atoms=args.max_atoms)
        t_sample = time.perf_counter() - t
        save_samples(args.save_samples, name, samples)
        result["models"][name] = {
            "checkpoint": str(args.gan if name == "gan" else args.diffusion), "checkpoint_hash": ckpt["hash"],
            "epochs": ckpt["epoch"], "sampling_seconds": t_sample,
            "metrics": score(samples, held, train, args.dataset, not args.no_coverage, args.workers),
            "training": training_cost(ckpt["history"])}
    if args.baseline_n:
        base = data_baseline(train, held, args.dataset, args.baseline_n, not args.no_coverage, args.workers)
        result["data_baseline"] = base
        for name in models:
            result["models"][name]["ratio_to_data"] = ratios(result["models"][name]["metrics"], base["metrics"])
    out = args.out or ROOT / "benchmarks" / "results" / f"generators-{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    rows = sorted(result["models"]["gan"]["metrics"])
    base = result.get("data_baseline", {}).get("metrics", {})
    print(f"{'metric':28s} {'gan':>10s} {'diffusion':>10s} {'data':>10s}")
    for k in rows:
        g, d = result["models"]["gan"]["metrics"][k], result["models"]["diffusion"]["metrics"][k]
        print(f"{k:28s} {_fmt(g):>10s} {_fmt(d):>10s} {_fmt(base.get(k)):>10s}")
    print(f"{'structures/s (same batch)':28s} {speed['gan']['structures_per_s']:10.1f} "
          f"{speed['diffusion']['structures_per_s']:10.2f}   GAN speed-up {speed['gan_speedup']:.0f}x")
    return result


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


if __name__ == "__main__":
    main()
