"""``matloop micro``: microstructure datasets (issue 22; the generators' commands come next)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

micro_app = typer.Typer(help="Microstructure images: datasets from physical models or your own images.",
                        no_args_is_help=True)


def _merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, mappings merged key by key."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_micro_config(config: Path | None, overrides: list[str], schema: type | None = None,
                      base: dict | None = None):
    """A ``schema`` (default MicroDataConfig) from ``base``, YAML over it and ``--set`` overrides; every problem a
    ConfigError naming the key."""
    import yaml
    from pydantic import ValidationError

    from conf.loader import ConfigError, apply_override
    from conf.micro import MicroDataConfig

    schema = schema or MicroDataConfig

    raw = {}
    if config is not None:
        try:
            raw = yaml.safe_load(config.read_text()) or {}
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--config {config}: {getattr(exc, 'strerror', None) or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config {config} is not YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"--config {config}: expected a mapping of microstructure data settings")
    raw = _merge(base or {}, raw)
    for assignment in overrides:
        apply_override(raw, assignment)
    data = raw.get("data") if schema is not MicroDataConfig else raw
    if isinstance(data, dict) and isinstance(data.get("source"), dict):  # source options without a kind: the default's
        data["source"].setdefault("kind", "spinodal")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"{config or 'micro data settings'}: {problems}") from None


@micro_app.command("data")
def data_cmd(config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML of the dataset "
                                                          "(conf/micro_data.yaml; default: its values).")] = None,
             set_: Annotated[list[str] | None, typer.Option("--set", help="Override: dotted.key=value.")] = None
             ) -> None:
    """Simulate (or read and validate) a microstructure dataset, cache it, and print its conditions and splits."""
    from rich.table import Table

    from conf.loader import ConfigError
    from flows.cli_common import console, fail
    from tasks.errors import MatloopError
    from tasks.micro.dataset import cache_path, load_dataset

    try:
        cfg = load_micro_config(config, list(set_ or []))
        data = load_dataset(cfg)
    except (ConfigError, MatloopError, OSError) as exc:
        fail(exc)
    table = Table(title=f"{cfg.source.kind} dataset: {len(data.images)} images of {cfg.size}x{cfg.size}")
    for col in (*data.condition_columns, "split", "images", "volume fraction"):
        table.add_column(col, justify="left" if col == "split" else "right")
    frame = data.table.assign(vf=data.images.mean(axis=(1, 2)))
    for _, group in frame.groupby("condition", sort=True):
        split = "test" if (group["split"] == "test").all() else "train/val"
        table.add_row(*(f"{group[c].iloc[0]:g}" for c in data.condition_columns), split, str(len(group)),
                      f"{group['vf'].mean():.3f} ± {group['vf'].std(ddof=0):.3f}")
    console.print(table)
    counts = data.table["split"].value_counts().to_dict()
    console.print("splits: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test")))
    if cfg.source.kind != "folder":
        console.print(f"cached: {cache_path(cfg)}")


@micro_app.command("train")
def train_cmd(config: Annotated[Path | None, typer.Option(
                  "--config", "-c", help="YAML of a MicroTrainConfig (data, model gan|diffusion, gan, diffusion, "
                  "train).")] = None,
              out: Annotated[Path, typer.Option(help="Checkpoint path.")] = Path("checkpoints/micro.pt"),
              set_: Annotated[list[str] | None, typer.Option("--set", help="Override: dotted.key=value.")] = None,
              resume: Annotated[bool, typer.Option(help="Continue from the checkpoint at --out.")] = False) -> None:
    """Train a conditional GAN or DDPM on a microstructure dataset's train split (simulated first if needed).
    With --resume the run continues from its checkpoint's own settings (--config/--set may change train.*)."""
    from conf.loader import ConfigError
    from conf.micro import MicroTrainConfig
    from flows.cli_common import console, fail
    from models.training import TrainingStopped
    from tasks.errors import MatloopError
    from tasks.micro.train import resume_config, train_micro

    if resume and not out.is_file():
        fail(ConfigError(f"--resume: no checkpoint at {out}"))
    try:
        base = resume_config(out) if resume else None
        cfg = load_micro_config(config, list(set_ or []), MicroTrainConfig, base)
        path = train_micro(cfg, out, resume, log=lambda r: console.print(
            f"epoch {r['epoch']} ({r['seconds']:.1f} s): " + ", ".join(
                f"{k} {v:.4f}" for k, v in r.items() if k not in ("epoch", "seconds") and isinstance(v, float))))
    except (ConfigError, MatloopError, ValueError, OSError, TrainingStopped) as exc:
        fail(exc)
    console.print(f"checkpoint: {path}")


@micro_app.command("evaluate")
def evaluate_cmd(checkpoint: Path,
                 out: Annotated[Path, typer.Option(help="Folder for metrics.json and the plots.")] = Path("micro-eval"),
                 n: Annotated[int, typer.Option(min=2, help="Images generated per test condition.")] = 32,
                 with_property: Annotated[bool, typer.Option("--property", help="Also the effective diffusivity "
                                                             "(taufactor, ~0.2 s an image).")] = False,
                 steps: Annotated[int, typer.Option(min=1, help="DDIM steps (diffusion).")] = 50,
                 guidance: Annotated[float, typer.Option(help="Classifier-free guidance (diffusion; 1 = none).")] = 1.0,
                 split: Annotated[str, typer.Option(help="test: the held-out conditions (the claim); val: the "
                                                    "training conditions' held-out images (model selection).")
                                  ] = "test",
                 seed: int = 0) -> None:
    """Score a trained generator on its dataset's held-out test conditions (statistics, property, diversity,
    memorisation); write metrics.json (last), s2.png, samples.png (and d_eff.png)."""
    from flows.cli_common import console, fail
    from tasks.errors import MatloopError
    from tasks.micro.report import evaluate_generator

    if not checkpoint.is_file():
        fail(FileNotFoundError(f"no checkpoint at {checkpoint}"))
    try:
        result = evaluate_generator(checkpoint, out, n, with_property, steps, guidance, seed, split)
    except (MatloopError, ValueError, OSError) as exc:
        fail(exc)
    console.print(f"{result['kind']} on {len(result['conditions'])} {split} conditions: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in result["mean"].items()) + f" -> {out / 'metrics.json'}")


def _micro_store(store: str | None) -> str:
    import os

    from conf.micro_campaign import MicroCampaignConfig
    from tasks.store import adopt_credentials
    from tasks.store.engine import require_store

    url = store or os.environ.get("MATLOOP_STORE_URL") or MicroCampaignConfig.model_fields["output_dir"].default
    if "://" not in str(url):
        url = f"sqlite:///{(Path(url) / 'matloop.db').resolve()}"
    return require_store(adopt_credentials(str(url)))


@micro_app.command("run")
def run_cmd(config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML of a MicroCampaignConfig "
                                                        "(conf/micro_campaign.yaml).")] = None,
            set_: Annotated[list[str] | None, typer.Option("--set", help="Override: dotted.key=value.")] = None,
            resume: Annotated[str | None, typer.Option(help="Continue the campaign with this id.")] = None,
            store: Annotated[str | None, typer.Option(help="Store URL (default: MATLOOP_STORE_URL, else the config's "
                                                      "store_url or <output_dir>/matloop.db; for --resume "
                                                      "runs/micro/matloop.db).")] = None) -> None:
    """Run a microstructure campaign: rounds of conditions proposed for a target property band, images generated
    and checked, their property computed; every result in the store, each round's summary in the Prefect UI."""
    import os

    from conf.loader import ConfigError
    from conf.micro_campaign import MicroCampaignConfig
    from flows.cli_common import console, fail
    from flows.micro_campaign import micro_campaign, start_micro_campaign
    from flows.server import prefect_api
    from tasks.errors import MatloopError
    from tasks.micro import campaign as steps
    from tasks.store import Store, public_url

    try:
        if resume:
            if config is not None or set_:
                raise ConfigError("--resume continues the stored campaign with its own config: drop --config/--set")
            url = _micro_store(store)
            row = Store(url).micro_campaign(resume)
            cfg = MicroCampaignConfig.model_validate(row.config)
            steps.generator_of(cfg, row.generator_hash)  # still there, and the same generator
            steps.space_of(cfg)
            cid = resume
        else:
            if config is None:
                raise ConfigError("--config is required (a campaign needs its generator and target: see "
                                  "conf/micro_campaign.yaml)")
            cfg = load_micro_config(config, list(set_ or []), MicroCampaignConfig)
            url = Store(store or os.environ.get("MATLOOP_STORE_URL") or cfg.url()).url  # password: environment only
            cid = start_micro_campaign(cfg, url)
            console.print(f"microstructure campaign {cid} in {public_url(url)}")
    except (ConfigError, MatloopError, ValueError, OSError) as exc:
        fail(exc)
    try:
        with prefect_api():
            result = micro_campaign(url, cid)
    except (MatloopError, OSError) as exc:  # the campaign is marked failed; `--resume` continues it
        fail(MatloopError(f"campaign {cid} stopped: {exc} (fix it, then `matloop micro run --resume {cid}`)"))
    last = result["rounds"][-1] if result["rounds"] else {}
    console.print(f"campaign {cid}: {last.get('in_band_total', 0)} of {last.get('evaluations_total', 0)} conditions "
                  f"in the target band; first at evaluation {last.get('first_hit_evaluation')}; best "
                  f"{(last.get('best') or {}).get('conditions')}")


@micro_app.command("status")
def status_cmd(campaign_id: str,
               store: Annotated[str | None, typer.Option(help="Store URL (default: MATLOOP_STORE_URL or "
                                                         "runs/micro/matloop.db).")] = None) -> None:
    """Every condition a microstructure campaign asked for: why, its images' validity, its property."""
    from rich.table import Table

    from flows.cli_common import console, fail
    from flows.micro_campaign import evaluation_rows
    from tasks.errors import MatloopError
    from tasks.store import Store

    try:
        st = Store(_micro_store(store))
        campaign = st.micro_campaign(campaign_id)
        rows = evaluation_rows(st, campaign_id)
    except (MatloopError, ValueError, OSError) as exc:
        fail(exc)
    table = Table(title=f"{campaign.name} ({campaign_id}): {campaign.status}")
    for col in rows[0] if rows else ("round",):
        table.add_column(col)
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str("" if v is None else v) for v in row.values()))
    console.print(table)


@micro_app.command("rerun-failed")
def rerun_cmd(campaign_id: str,
              store: Annotated[str | None, typer.Option(help="Store URL (default: MATLOOP_STORE_URL or "
                                                        "runs/micro/matloop.db).")] = None) -> None:
    """Compute the property of a campaign's failed conditions again (their images are kept)."""
    from flows.cli_common import console, fail
    from tasks.errors import MatloopError
    from tasks.micro.campaign import rerun_failed
    from tasks.store import Store

    try:
        ok, still = rerun_failed(Store(_micro_store(store)), campaign_id)
    except (MatloopError, ValueError, OSError) as exc:
        fail(exc)
    console.print(f"{ok} failed condition(s) evaluated again, {still} still failing")
