"""Evaluate a trained microstructure generator on its dataset's held-out test conditions; write JSON and plots.

For every test condition: ``n`` generated images against that condition's real (held-out) images, scored by
:func:`tasks.micro.evaluate.score_condition` (memorisation against the training images); the mean over conditions;
sampling speed. Files: ``metrics.json``, ``s2.png`` (S2 curves, real vs generated, per condition), ``samples.png``
(real and generated images side by side), ``d_eff.png`` (effective diffusivity histograms, with ``--property``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from conf.micro import MicroDataConfig
from tasks.micro.dataset import MicroDataError, load_dataset
from tasks.micro.evaluate import compare, image_stats
from tasks.micro.train import load_micro_generator

SCORES = ("volume_fraction_error", "s2_rmse", "lineal_path_rmse", "mean_chord_rel_error", "components_rel_error",
          "largest_cluster_error", "percolation_error", "d_eff_rel_error", "diversity_ratio", "nearest_train_distance")


def evaluate_generator(checkpoint: Path, out: Path, n: int = 32, with_property: bool = False, steps: int = 50,
                       guidance: float = 1.0, seed: int = 0, split: str = "test") -> dict:
    """Score the generator at ``checkpoint`` on every condition of its dataset's ``split`` (``test``: the held-out
    conditions, for the claim; ``val``: the training conditions' held-out images, for model selection)."""
    if split not in ("test", "val"):
        raise MicroDataError(f"unknown split {split!r}; allowed: test, val")
    gen = load_micro_generator(checkpoint)
    data = load_dataset(MicroDataConfig.model_validate(_data_config(checkpoint)))
    real_images, real_table = data.split(split)
    train_images, _ = data.split("train")
    if len(real_images) == 0:
        raise MicroDataError(f"the dataset of {checkpoint} has no {split} images: nothing to score")
    rows, panels, seconds = [], [], 0.0
    for cond_id, group in real_table.groupby("condition", sort=True):
        condition = {c: float(group[c].iloc[0]) for c in gen.columns}
        start = time.perf_counter()
        fake = gen.sample(condition, n, seed=seed + int(cond_id), steps=steps, guidance=guidance)
        seconds += time.perf_counter() - start
        real = real_images[group.index.to_numpy()]
        r_stats, g_stats = image_stats(real, with_property), image_stats(fake, with_property)
        rows.append({"condition": condition, **compare(real, fake, r_stats, g_stats, train_images).as_dict()})
        panels.append((condition, real, fake, r_stats, g_stats))
    mean = {k: float(np.mean([r[k] for r in rows if r[k] is not None])) for k in SCORES
            if any(r[k] is not None for r in rows)}
    diffusion = gen.kind == "micro-diffusion"
    result = {"checkpoint": str(checkpoint), "checkpoint_hash": gen.hash, "kind": gen.kind, "split": split,
              "n_per_condition": n, "steps": steps if diffusion else None, "guidance": guidance if diffusion else None,
              "images_per_second": n * len(rows) / seconds if seconds else None,
              "conditions": rows, "mean": mean}
    out.mkdir(parents=True, exist_ok=True)
    _plots(panels, out, with_property)
    write_json_atomic(out / "metrics.json", result)  # last: a metrics.json means the evaluation finished
    return result


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _data_config(checkpoint: Path) -> dict:
    from models.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint)["data_config"]


def _label(condition: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in condition.items())


def _plots(panels, out: Path, with_property: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (condition, _, _, real, fake) in zip(axes[0], panels):
        ax.plot(real.s2, label="real")
        ax.plot(fake.s2, "--", label="generated")
        ax.set(title=_label(condition), xlabel="r (px)", ylabel="S2(r)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "s2.png", dpi=100)
    plt.close(fig)
    k = 4
    fig, axes = plt.subplots(len(panels), 2 * k, figsize=(2 * k * 1.2, len(panels) * 1.3), squeeze=False)
    for row, (condition, real, fake, _, _) in zip(axes, panels):
        for j in range(2 * k):
            img = real[j] if j < k and j < len(real) else fake[j - k] if j >= k and j - k < len(fake) else None
            if img is not None:
                row[j].imshow(img, cmap="gray", interpolation="nearest")
            row[j].set_axis_off()
        row[0].set_title(f"real | {_label(condition)}", fontsize=7, loc="left")
        row[k].set_title("generated", fontsize=7, loc="left")
    fig.savefig(out / "samples.png", dpi=100)
    plt.close(fig)
    if with_property:
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
        for ax, (condition, _, _, real, fake) in zip(axes[0], panels):
            ax.hist([real.d_eff, fake.d_eff], label=["real", "generated"])
            ax.set(title=_label(condition), xlabel="D_eff / D_0")
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / "d_eff.png", dpi=100)
        plt.close(fig)
