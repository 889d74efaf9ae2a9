"""Discovery benchmark: does a campaign find held-out stable materials faster than its controls?

For every (system, generator, learning on/off, seed) it runs a real campaign (Prefect, the store, MLIP
relaxation; DFT off) with the same relaxation budget, then judges each relaxation against held-out truth
(tasks/metrics/discovery.py): rediscoveries of the system's held-out stable phases and S.U.N. hits against the
full reference hull. The protocol is in benchmarks/README.md.

    python benchmarks/discovery.py --tier quick                         # 1 system, 1 seed, 2 rounds
    python benchmarks/discovery.py --tier full                          # about 2 h on 2 cores
    python benchmarks/discovery.py --systems Li-Mn-O,Ba-Ti-O --generators substitution,random,diffusion,gan \\
        --learning on,off --seeds 0,1,2 --rounds 3 --per-round 6 [--heldout FILE] [--data FILE ...]
    python benchmarks/discovery.py --train diffusion|gan                # the generators' checkpoints

Campaigns share one store in the work folder (``--workdir``, default campaigns/discovery), so known phases
relax once and identical proposals are relaxed once; a killed run continues where it stopped (finished
campaigns are found by name and not run again). Writes benchmarks/results/discovery-<commit>.json, a PNG of
the discovery curves and a CSV of every judged relaxation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from benchmarks.discovery_data import (
    DEFAULT_DATA,
    DEFAULT_ELEMENTAL,
    DEFAULT_HULL,
    DEFAULT_TEMPLATES,
    BenchmarkData,
    prepare,
    record_inputs,
)

FULL_SYSTEMS = ["Ba-Ti-O", "Li-In-O", "Na-Sb-O", "Ba-Hf-O", "Ca-C-O"]
TIERS = {"quick": {"systems": ["Ba-Ti-O"], "generators": ["substitution", "random"], "learning": ["on", "off"],
                   "seeds": [0], "rounds": 2, "per_round": 4},
         "full": {"systems": FULL_SYSTEMS, "generators": ["substitution", "random", "diffusion", "gan"],
                  "learning": ["on", "off"], "seeds": [0, 1, 2], "rounds": 3, "per_round": 6}}
GENERATORS = ("substitution", "random", "diffusion", "gan")
CHECKPOINTS = {"diffusion": ROOT / "checkpoints/discovery_diffusion.pt", "gan": ROOT / "checkpoints/discovery_gan.pt"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tier", choices=sorted(TIERS), default="quick", help="Defaults for the options below.")
    p.add_argument("--systems", help="Comma-separated chemical systems, e.g. Ba-Ti-O,Li-In-O.")
    p.add_argument("--generators", help=f"Comma-separated, from {', '.join(GENERATORS)}.")
    p.add_argument("--learning", help="Comma-separated: on, off.")
    p.add_argument("--seeds", help="Comma-separated campaign seeds.")
    p.add_argument("--rounds", type=int, help="Rounds the budget is sized for (budget = rounds x per-round).")
    p.add_argument("--per-round", type=int, help="Proposals per round.")
    p.add_argument("--budget", type=int, help="Relaxations per campaign (default rounds x per-round); a campaign "
                   "runs at most 3 x rounds rounds to spend it.")
    p.add_argument("--heldout", type=Path, help="Held-out phases (MP-20-format CSV; a 'system' column or the "
                   "structures' elements); default: the stable phases of each system found in --data.")
    p.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA, help="Reference structures.")
    p.add_argument("--templates", type=Path, nargs="+", default=DEFAULT_TEMPLATES,
                   help="Which of --data are seed templates.")
    p.add_argument("--hull", type=Path, default=DEFAULT_HULL, help="Reference hull table (MP-20 format).")
    p.add_argument("--elemental-refs", type=Path, default=DEFAULT_ELEMENTAL)
    p.add_argument("--oxidation-states", default="", help="Element=state pairs, e.g. Mn=3,Fe=2, for the systems "
                   "that hold those elements (default: pymatgen's common states, the anion's most negative).")
    p.add_argument("--mlip", default="chgnet", choices=["chgnet", "mace", "auto"])
    p.add_argument("--set", action="append", default=[], dest="overrides", help="Campaign override key=value.")
    p.add_argument("--workers", type=int, default=2, help="Relaxation processes.")
    p.add_argument("--workdir", type=Path, help="Store and files of the run (default campaigns/discovery for the "
                   "full tier and --train, campaigns/discovery-quick for the quick tier).")
    p.add_argument("--out", type=Path, help="Result JSON (default benchmarks/results/discovery-<commit>.json).")
    p.add_argument("--train", choices=["diffusion", "gan"], help="Train that generator's checkpoint and exit.")
    p.add_argument("--checkpoint", action="append", default=[], metavar="GEN=REF",
                   help="A generator's checkpoint: a path or builtin[:variant] (the shipped weights, trained without "
                        "the held-out phases), e.g. gan=builtin; default checkpoints/discovery_<gen>.pt.")
    args = p.parse_args(argv)
    args.checkpoints = {g: str(path) for g, path in CHECKPOINTS.items()}
    for item in args.checkpoint:
        gen, _, ref = item.partition("=")
        if gen not in CHECKPOINTS or not ref:
            p.error(f"--checkpoint expects GEN=REF with GEN one of {', '.join(CHECKPOINTS)}, got {item!r}")
        args.checkpoints[gen] = ref
    tier = TIERS["full" if args.train and not args.systems else args.tier]  # checkpoints serve the full tier
    args.systems = args.systems.split(",") if args.systems else tier["systems"]
    args.generators = args.generators.split(",") if args.generators else tier["generators"]
    args.learning = args.learning.split(",") if args.learning else tier["learning"]
    args.seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else tier["seeds"]
    args.rounds = args.rounds or tier["rounds"]
    args.per_round = args.per_round or tier["per_round"]
    args.budget = args.budget or args.rounds * args.per_round
    if args.workdir is None:
        quick = args.tier == "quick" and not args.train
        args.workdir = ROOT / "campaigns" / ("discovery-quick" if quick else "discovery")
    try:
        args.oxidation = {k.strip(): int(v) for k, v in (x.split("=") for x in args.oxidation_states.split(",") if x)}
    except ValueError:
        p.error(f"--oxidation-states expects El=integer pairs, got {args.oxidation_states!r}")
    bad = [g for g in args.generators if g not in GENERATORS] + [x for x in args.learning if x not in ("on", "off")]
    if bad:
        p.error(f"unknown generator or learning value(s) {bad}; allowed: {', '.join(GENERATORS)}; on, off")
    return args


def campaign_config(system: str, generator: str, learning: str, seed: int, args: argparse.Namespace,
                    data: BenchmarkData):
    """The campaign of one arm: same seeds, filter, MLIP, hull and budget for every arm."""
    from conf.generator import only_own_options
    from conf.loader import apply_override, validate_config
    from tasks.context import default_oxidation_states

    elements = system.split("-")
    given = {k: v for k, v in args.oxidation.items() if k in elements}
    target = {"chemical_system": system, "max_atoms": 20}
    if given:  # otherwise the campaign's default (the same states), so the arm's name does not change
        target["oxidation_states"] = {**default_oxidation_states(elements), **given}
    cfg = {"seed": seed, "rounds": 3 * args.rounds, "output_dir": str(args.workdir / "campaigns"),
           "target": target,
           "seeds": {"sources": [{"kind": "builtin"}, {"kind": "csv", "path": str(data.templates)}],
                     "exclude": [{"kind": "csv", "path": str(data.heldout_file)}], "max_sites": 20},
           "generator": {"name": generator, "n_per_round": args.per_round,
                         "diffusion": {"checkpoint": args.checkpoints["diffusion"], "steps": 200},
                         "gan": {"checkpoint": args.checkpoints["gan"]}},
           "relax": {"backend": args.mlip}, "dft": {"backend": "none"},
           "evaluate": {"reference_hull": str(data.campaign_hull), "elemental_references": str(data.elemental)},
           "feedback": {"enabled": learning == "on"}, "budget": {"relaxations": args.budget},
           "runner": {"kind": "processes", "max_workers": args.workers}}
    for assignment in args.overrides:
        apply_override(cfg, assignment)
    identity = {k: v for k, v in cfg.items() if k not in ("output_dir", "runner")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    cfg["name"] = f"discovery:{system}:{generator}:{learning}:s{seed}:{digest}"
    cfg["store"] = {"url": f"sqlite:///{(args.workdir / 'discovery.db').resolve()}"}
    cfg["generator"] = only_own_options(cfg["generator"], cfg["generator"]["name"])  # after the name's digest
    return validate_config(cfg, source=f"discovery arm {system}/{generator}/{learning}/{seed}")


def arm_checkpoints(configs: dict) -> dict[str, set[str]]:
    """Each generative family's checkpoint references over the arms (``--set`` overrides included)."""
    refs: dict[str, set[str]] = {}
    for cfg in configs.values():
        name = cfg.generator.name
        if name in CHECKPOINTS:
            refs.setdefault(name, set()).add(str(cfg.generator.options.checkpoint))
    return refs


def check_checkpoint(generator: str, ref: str, data: BenchmarkData) -> Path:
    """The generator's checkpoint exists and was trained without any held-out phase of this run."""
    from models.checkpoint import load_checkpoint
    from tasks.generators.fetch import resolve_checkpoint

    path = resolve_checkpoint(ref, kind=generator)
    if not path.is_file():
        raise SystemExit(f"error: {path} not found; train it with: python benchmarks/discovery.py --train {generator} "
                         f"(or pass --checkpoint {generator}=builtin for the shipped weights)")
    kept_away = set(load_checkpoint(path).get("exclude_ids", []))
    missing = sorted(set(data.heldout["id"]) - kept_away)
    if missing:
        raise SystemExit(f"error: {path} was trained without excluding held-out phase(s) {missing}; retrain it with "
                         f"python benchmarks/discovery.py --train {generator} --systems <these systems>")
    return path


def record_checkpoints(workdir: Path, paths: dict[str, Path]) -> None:
    """The checkpoints' hashes join the work folder's record of its inputs (a retrained one is refused)."""
    from models.checkpoint import load_checkpoint

    record_inputs(workdir, {f"checkpoint:{key}": load_checkpoint(path)["hash"] for key, path in paths.items()})


def run_arm(cfg, runner) -> tuple[str, float]:
    """Start the arm's campaign, or continue the one of the same name; returns (campaign id, wall seconds)."""
    from flows.campaign import run_campaign, start_campaign
    from tasks.store import Store

    store = Store(cfg.store_url())
    existing = [c for c in store.campaigns() if c.name == cfg.name]
    if existing and existing[-1].status == "completed":
        return existing[-1].id, 0.0
    t0 = time.perf_counter()
    cid = existing[-1].id if existing else start_campaign(cfg)
    run_campaign(cfg.store_url(), cid, task_runner=runner)
    return cid, time.perf_counter() - t0


def train(generator: str, args: argparse.Namespace) -> None:
    import yaml

    from conf.training import TrainRunConfig
    from tasks.train import describe_epoch, train_model

    data = prepare(args.workdir, args.systems, args.data, args.hull, args.elemental_refs, args.heldout,
                   args.templates)
    config = ROOT / "conf" / f"train_discovery_{generator}.yaml"
    run = TrainRunConfig.model_validate(yaml.safe_load(config.read_text()))
    if [p.resolve() for p in run.exclude] != [data.heldout_file.resolve()]:
        print(f"note: excluding {data.heldout_file} (the held-out phases of {', '.join(args.systems)})")
    paths = [p if p.is_absolute() else ROOT / p for p in run.data]  # the config's paths are the repository's
    run = run.model_copy(update={"exclude": [data.heldout_file], "data": paths, "out": ROOT / run.out})
    print(f"training {run.out} from {config} without {len(data.heldout)} held-out phase(s)")
    train_model(run, log_epoch=lambda r: print(describe_epoch(r), flush=True))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.train:
        train(args.train, args)
        return {}
    from benchmarks.discovery_report import judge_arms, write_outputs
    from conf.schema import RunnerConfig
    from flows.runners import make_task_runner
    from flows.server import prefect_api

    data = prepare(args.workdir, args.systems, args.data, args.hull, args.elemental_refs, args.heldout,
                   args.templates)
    missing = [s for s in args.systems if s not in set(data.heldout["system"])]
    if missing:
        print(f"note: no held-out phase for {missing} (no reference structure with all of their elements lies on "
              "the reference hull; pass --heldout FILE): only S.U.N. hits can count there", flush=True)
    arms = [(s, g, lrn, seed) for s in args.systems for seed in args.seeds for g in args.generators
            for lrn in args.learning]
    configs = {arm: campaign_config(*arm, args, data) for arm in arms}
    paths = {(g if ref == str(CHECKPOINTS[g]) else f"{g}:{ref}"): check_checkpoint(g, ref, data)
             for g, refs in arm_checkpoints(configs).items() for ref in sorted(refs)}
    record_checkpoints(args.workdir, paths)
    runs: dict = {}
    t0 = time.perf_counter()
    with prefect_api(), make_task_runner(RunnerConfig(kind="processes", max_workers=args.workers)) as runner:
        for i, arm in enumerate(arms, start=1):
            print(f"[{i}/{len(arms)}] {'/'.join(map(str, arm))}", flush=True)
            try:
                runs[arm] = (*run_arm(configs[arm], runner), "")
            except Exception as exc:  # one broken arm is reported, the others still run
                runs[arm] = (None, 0.0, f"{type(exc).__name__}: {exc}")
                print(f"  failed: {runs[arm][2]}", flush=True)
            if i < len(arms) and arms[i][0] != arm[0]:  # a system is done: partial results on disk
                done = [a for a in arms if a in runs]
                write_outputs(judge_arms(done, configs, runs, data, args.budget), args, data,
                              time.perf_counter() - t0, partial=True)
    judged = judge_arms(arms, configs, runs, data, args.budget)
    return write_outputs(judged, args, data, time.perf_counter() - t0)


if __name__ == "__main__":
    if "--train" not in sys.argv:  # the run's Prefect database lives with its store (before Prefect is imported)
        os.environ.setdefault("PREFECT_HOME", str(parse_args().workdir / "prefect"))
    main()
