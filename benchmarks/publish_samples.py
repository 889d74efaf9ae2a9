"""Publish the generated crystals behind the headline generation metrics, and check they reproduce them.

    python benchmarks/publish_samples.py [--only diffusion-perov5,generators-perov5] [--dry-run]

For each published result (``benchmarks/results/<name>.json``) this trains the checkpoints it was measured on
from their configs (``matloop train --config conf/train_*.yaml --no-prefect``, one thread, bit-reproducible;
an interrupted training resumes), checks each checkpoint's content hash against the one the result records,
reruns the benchmark's own command with ``--save-samples`` and writes

* ``benchmarks/results/samples/<name>-<model>.extxyz.gz``: every generated crystal, in sampling order
  (rescore them with ``matloop evaluate`` or your own code, against your own splits);
* ``benchmarks/results/samples/<name>.json``: the rerun's full result;
* ``benchmarks/results/samples/MANIFEST.json``: per sample file its SHA-256, count, checkpoint and hash, the
  command, and whether the rerun's metrics equal the published ones (the differences listed when not).

Steps already done (a checkpoint at its final epoch, a rerun result on disk) are skipped, so the script
resumes where a previous run stopped. It needs ``../shared/data`` (the training data) and hours of one core
for all entries: Perov-5 diffusion trains 1000 epochs (~55 min) and samples 10 000 crystals (~15 min).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLES = RESULTS / "samples"


class Entry(NamedTuple):
    """A published result: the configs of its checkpoints (model name -> config) and its benchmark command."""

    name: str
    configs: dict[str, str]
    command: list[str]


ENTRIES = (
    Entry("diffusion-perov5", {"diffusion": "conf/train_perov5.yaml"},
          ["benchmarks/diffusion.py", "--checkpoint", "checkpoints/perov5.pt", "--dataset", "perov5",
           "--n", "10000", "--threads", "1"]),
    Entry("generators-perov5", {"diffusion": "conf/train_perov5.yaml", "gan": "conf/train_gan_perov5.yaml"},
          ["benchmarks/generators.py", "--gan", "checkpoints/gan_perov5.pt", "--diffusion", "checkpoints/perov5.pt",
           "--dataset", "perov5", "--n", "1000", "--threads", "1"]),
    Entry("diffusion-mp20", {"diffusion": "conf/train_mp20.yaml"},
          ["benchmarks/diffusion.py", "--checkpoint", "checkpoints/mp20.pt", "--dataset", "mp20", "--n", "1000",
           "--no-coverage", "--threads", "1"]),
    Entry("generators-mp20", {"diffusion": "conf/train_mp20.yaml", "gan": "conf/train_gan_mp20.yaml"},
          ["benchmarks/generators.py", "--gan", "checkpoints/gan_mp20.pt", "--diffusion", "checkpoints/mp20.pt",
           "--dataset", "mp20", "--n", "500", "--no-coverage", "--speed-batch", "64", "--threads", "1"]),
    Entry("generators-carbon24", {"diffusion": "conf/train_carbon24.yaml", "gan": "conf/train_gan_carbon24.yaml"},
          ["benchmarks/generators.py", "--gan", "checkpoints/gan_carbon24.pt", "--diffusion",
           "checkpoints/carbon24.pt", "--dataset", "carbon24", "--n", "500", "--baseline-n", "500", "--max-atoms", "24",
           "--threads", "1"]),
)


def published_hashes(result: dict) -> dict[str, str]:
    if "models" in result:
        return {name: m["checkpoint_hash"] for name, m in result["models"].items()}
    return {"diffusion": result["checkpoint_hash"]}


def published_metrics(result: dict) -> dict[str, dict]:
    if "models" in result:
        return {name: m["metrics"] for name, m in result["models"].items()}
    return {"diffusion": result["metrics"]}


def differences(old: dict, new: dict, rel: float = 1e-9) -> dict[str, list]:
    """Metrics whose values differ between two results (None and NaN equal themselves)."""
    out = {}
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        same = a == b or (isinstance(a, float) and isinstance(b, float)
                          and (math.isclose(a, b, rel_tol=rel) or (math.isnan(a) and math.isnan(b))))
        if not same:
            out[k] = [a, b]
    return out


def ensure_checkpoint(config: str, dry_run: bool) -> Path:
    """Train the config's checkpoint unless it is at its final epoch; resume a partial one."""
    import torch
    import yaml

    cfg = yaml.safe_load((ROOT / config).read_text())
    out = ROOT / cfg["out"]
    epochs = cfg["train"]["epochs"]
    resume = False
    if out.exists():
        done = torch.load(out, map_location="cpu", weights_only=False).get("epoch", 0)
        if done >= epochs:
            return out
        resume = True
    cmd = [str(Path(sys.executable).parent / "matloop"), "train", "--config", config, "--no-prefect"]
    cmd += ["--resume"] if resume else []
    print("+", " ".join(cmd), flush=True)
    if not dry_run:
        subprocess.run(cmd, cwd=ROOT, check=True)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def publish(entry: Entry, dry_run: bool) -> dict | None:
    published = json.loads((RESULTS / f"{entry.name}.json").read_text())
    paths = {model: ensure_checkpoint(config, dry_run) for model, config in entry.configs.items()}
    if dry_run:
        return None
    import torch

    hashes = {m: torch.load(p, map_location="cpu", weights_only=False)["hash"] for m, p in paths.items()}
    rerun = SAMPLES / f"{entry.name}.json"
    pattern = SAMPLES / f"{entry.name}-%s.extxyz.gz"
    if not rerun.exists():
        cmd = [sys.executable, *entry.command, "--save-samples", str(pattern), "--out", str(rerun)]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    new = json.loads(rerun.read_text())
    old_metrics, new_metrics = published_metrics(published), published_metrics(new)
    record = {}
    for model in entry.configs:
        path = Path(str(pattern).replace("%s", model))
        diff = differences(old_metrics[model], new_metrics[model])
        record[model] = {
            "file": path.name, "sha256": sha256(path), "n": new.get("n_generated"),
            "checkpoint": str(paths[model].relative_to(ROOT)), "checkpoint_hash": hashes[model],
            "published_checkpoint_hash": published_hashes(published)[model],
            "command": " ".join(["python", *entry.command]),
            "metrics_reproduced": not diff, "metric_differences": diff}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="Comma-separated entry names (default: all, in order).")
    parser.add_argument("--dry-run", action="store_true", help="Print what would run.")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or [e.name for e in ENTRIES]
    unknown = sorted(set(names) - {e.name for e in ENTRIES})
    if unknown:
        raise SystemExit(f"error: unknown entries {unknown}; allowed: {[e.name for e in ENTRIES]}")
    SAMPLES.mkdir(parents=True, exist_ok=True)
    manifest_path = SAMPLES / "MANIFEST.json"
    for entry in ENTRIES:
        if entry.name not in names:
            continue
        record = publish(entry, args.dry_run)
        if record is not None:
            # read just before writing: two runs over different entries may share the manifest
            manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
            manifest[entry.name] = record
            manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            print(json.dumps({entry.name: record}, indent=2), flush=True)


if __name__ == "__main__":
    main()
