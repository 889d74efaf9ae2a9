"""Diffusion generator benchmark: CDVAE's protocol on a trained checkpoint, plus sampling throughput.

    matloop train --config conf/train_perov5.yaml          # the checkpoint (reproducible, one command)
    python benchmarks/diffusion.py --checkpoint checkpoints/perov5.pt --dataset perov5 --n 10000

Samples ``n`` crystals at the fast setting (200 steps, one corrector step), scores them against the
checkpoint's held-out structures or those of ``--reference`` (validity, COV-R/COV-P with the dataset's
cutoffs, Wasserstein distances of density and number of elements) and against its training structures
(novelty), times sampling at 200 and 1000 steps on the same batch, and reads the training cost per epoch
from the checkpoint.
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
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
from benchmarks.scoring import add_common_args  # after ROOT is on sys.path


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dataset", choices=["perov5", "carbon24", "mp20"], required=True)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--throughput-batch", type=int, default=64)
    add_common_args(parser)
    args = parser.parse_args()

    import pandas as pd
    import torch

    from benchmarks.scoring import data_baseline, ratios, save_samples, score, split_of, training_cost
    from models.api import load_diffusion, sample_structures
    from models.sampler import SamplerConfig
    from tasks.metrics.samples import EvaluationOptions, evaluate_samples

    torch.set_num_threads(args.threads)
    model, ckpt = load_diffusion(args.checkpoint)
    train, held = split_of(args.checkpoint, ckpt, args.max_atoms, args.reference)

    fast = SamplerConfig(steps=args.steps)
    timing = {}
    for label, cfg in (("fast", fast), ("1000_steps", SamplerConfig(steps=1000))):
        t = time.perf_counter()
        batch = sample_structures(model, ckpt, args.throughput_batch, 123, cfg, max_atoms=args.max_atoms)
        seconds = time.perf_counter() - t
        valid = evaluate_samples(pd.DataFrame({"id": range(len(batch)), "structure": batch, "error": ""}),
                                 opts=EvaluationOptions(coverage=False))[0]["validity"]
        timing[label] = {"steps": cfg.steps, "seconds": seconds, "structures_per_s": len(batch) / seconds,
                         "valid_per_s": valid * len(batch) / seconds}

    t = time.perf_counter()
    samples = sample_structures(model, ckpt, args.n, 0, fast, max_atoms=args.max_atoms)
    t_sample = time.perf_counter() - t
    save_samples(args.save_samples, "diffusion", samples)
    t = time.perf_counter()
    metrics = score(samples, held, train, args.dataset, not args.no_coverage, args.workers)
    t_eval = time.perf_counter() - t
    baseline = (data_baseline(train, held, args.dataset, args.baseline_n, not args.no_coverage, args.workers)
                if args.baseline_n else None)
    history = ckpt["history"]
    result = {
        "benchmark": "diffusion", "dataset": args.dataset, "date": datetime.now(timezone.utc).isoformat(),
        "checkpoint": str(args.checkpoint), "checkpoint_hash": ckpt["hash"], "epochs": ckpt["epoch"],
        "n_train": len(train), "n_heldout": len(held),
        "reference": str(args.reference or "checkpoint holdout"), "n_generated": len(samples),
        "cpus": os.cpu_count(),
        "metrics": {k: v for k, v in metrics.items() if k != "novelty_of_valid_vs_train"},
        "novelty_of_valid_vs_train": metrics["novelty_of_valid_vs_train"],
        "data_baseline": baseline, "ratio_to_data": ratios(metrics, baseline["metrics"]) if baseline else None,
        "sampling": {"n": len(samples), "seconds": t_sample, "structures_per_s": len(samples) / t_sample,
                     "throughput_batch": timing},
        "evaluation_seconds": t_eval,
        "training": {**training_cost(history), "final_loss": history[-1]["loss"]},
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"diffusion-{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
