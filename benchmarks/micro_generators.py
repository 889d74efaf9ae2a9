"""Conditional GAN vs conditional DDPM on microstructures (issue 22): one dataset, one training budget, the
held-out process conditions.

Both generators train on the train split of one simulated dataset (default: conf/micro_train.yaml, Cahn–Hilliard
spinodal images over mean composition x annealing time, four interior conditions held out whole) for the same
number of epochs on CPU, then generate ``--n`` images per held-out condition. Each is scored against the real
images of that condition (tasks/micro/evaluate.py: volume fraction, S2, lineal path, chord length, effective
diffusivity by taufactor, diversity, nearest-training-image distance). Two baselines measured in the same run
bracket the scores:

* ``real-vs-real``: one half of a held-out condition's real images against the other half (the noise floor: no
  generator can be told from the truth by less);
* ``nearest-grid``: the training images of the nearest training condition (in the scaled condition space) used as
  the "generated" set (what a lookup table of the simulations already run gives; a generator must beat it to be
  worth its interpolation).

Training is checkpointed every ``checkpoint_every`` epochs and resumed when rerun. Writes
``benchmarks/results/micro_generators.json`` and the generated images
(``benchmarks/results/samples/micro-<model>.npz``: packed bits, with their conditions) so anyone can rescore them.

    python benchmarks/micro_generators.py --epochs 60 --workdir /tmp/microbench
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from conf.micro import MicroTrainConfig
from flows.micro_cmd import load_micro_config
from models.checkpoint import load_checkpoint
from tasks.micro.dataset import load_dataset
from tasks.micro.evaluate import compare, image_stats
from tasks.micro.report import SCORES
from tasks.micro.train import load_micro_generator, train_micro

ROOT = Path(__file__).resolve().parents[1]


def train(cfg: MicroTrainConfig, model: str, out: Path) -> dict:
    cfg = cfg.model_copy(update={"model": model})
    done = load_checkpoint(out)["epoch"] if out.is_file() else 0
    if done < cfg.train.epochs:
        train_micro(cfg, out, resume=out.is_file(),
                    log=lambda r: print(f"{model} epoch {r['epoch']} ({r['seconds']:.1f} s)", flush=True))
    history = load_checkpoint(out)["history"]
    seconds = [h["seconds"] for h in history]
    return {"epochs": len(history), "seconds_per_epoch": float(np.median(seconds)), "train_seconds": sum(seconds)}


def nearest_grid(data, condition: dict[str, float]) -> np.ndarray:
    """The training images of the training condition nearest to ``condition`` (each axis scaled by its range)."""
    images, table = data.split("train")
    cols = list(data.condition_columns)
    values = table[cols].to_numpy(dtype=float)
    span = values.max(axis=0) - values.min(axis=0)
    span[span == 0] = 1.0
    d = np.linalg.norm((values - np.array([condition[c] for c in cols])) / span, axis=1)
    return images[d == d.min()]


def score(real, fake, train_images, with_property: bool) -> dict:
    r, g = image_stats(real, with_property), image_stats(fake, with_property)
    return compare(real, fake, r, g, train_images).as_dict()


def mean_scores(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows if r[k] is not None])) for k in SCORES
            if any(r[k] is not None for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "conf" / "micro_train.yaml")
    parser.add_argument("--set", action="append", default=[], help="Override: dotted.key=value.")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--n", type=int, default=32, help="Images generated per held-out condition.")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps.")
    parser.add_argument("--workdir", type=Path, default=Path("microbench"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "micro_generators.json")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cfg = load_micro_config(args.config, [f"train.epochs={args.epochs}", f"data.cache_dir={args.workdir / 'data'}",
                                          *args.set], MicroTrainConfig)
    data = load_dataset(cfg.data)
    test_images, test_table = data.split("test")
    train_images, _ = data.split("train")
    groups = [(int(k), g) for k, g in test_table.groupby("condition", sort=True)]
    result = {"config": cfg.model_dump(mode="json"), "n_per_condition": args.n, "steps": args.steps,
              "train_images": len(train_images), "models": {}, "baselines": {}}
    rows = {"real-vs-real": [], "nearest-grid": []}
    for cond_id, group in groups:
        real = test_images[group.index.to_numpy()]
        condition = {c: float(group[c].iloc[0]) for c in data.condition_columns}
        half = len(real) // 2
        rows["real-vs-real"].append({"condition": condition, **score(real[:half], real[half:], train_images, True)})
        rows["nearest-grid"].append({"condition": condition, **score(real, nearest_grid(data, condition)[:args.n],
                                                                      train_images, True)})
    for name, r in rows.items():
        result["baselines"][name] = {"mean": mean_scores(r), "conditions": r}
    samples_dir = args.out.parent / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    for model in ("gan", "diffusion"):
        ckpt = args.workdir / f"micro-{model}.pt"
        training = train(cfg, model, ckpt)
        gen = load_micro_generator(ckpt)
        model_rows, fakes, seconds = [], [], 0.0
        for cond_id, group in groups:
            condition = {c: float(group[c].iloc[0]) for c in gen.columns}
            start = time.perf_counter()
            fake = gen.sample(condition, args.n, seed=cond_id, steps=args.steps)
            seconds += time.perf_counter() - start
            fakes.append(fake)
            real = test_images[group.index.to_numpy()]
            model_rows.append({"condition": condition, **score(real, fake, train_images, True)})
        result["models"][model] = {"checkpoint_hash": gen.hash, **training,
                                   "images_per_second": args.n * len(groups) / seconds,
                                   "mean": mean_scores(model_rows), "conditions": model_rows}
        np.savez_compressed(samples_dir / f"micro-{model}.npz", bits=np.packbits(np.stack(fakes), axis=-1),
                            shape=np.array(np.stack(fakes).shape),
                            conditions=np.array([[r["condition"][c] for c in gen.columns] for r in model_rows]),
                            columns=np.array(gen.columns))
        print(f"{model}: " + ", ".join(f"{k} {v:.3f}" for k, v in result["models"][model]["mean"].items()), flush=True)
    gan, ddpm = result["models"]["gan"], result["models"]["diffusion"]
    result["ratios"] = {"sampling_speed_gan_over_ddpm": gan["images_per_second"] / ddpm["images_per_second"],
                        "train_seconds_per_epoch_ddpm_over_gan": ddpm["seconds_per_epoch"] / gan["seconds_per_epoch"]}
    for name, base in result["baselines"].items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in base["mean"].items()))
    print(f"sampling: GAN {gan['images_per_second']:.1f} img/s, DDPM ({args.steps} steps) "
          f"{ddpm['images_per_second']:.2f} img/s: x{result['ratios']['sampling_speed_gan_over_ddpm']:.0f}; "
          f"training s/epoch: GAN {gan['seconds_per_epoch']:.1f}, DDPM {ddpm['seconds_per_epoch']:.1f}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
