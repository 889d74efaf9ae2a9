"""Load ``conf/*.yaml`` into :class:`conf.schema.CampaignConfig`, with ``--set key=value`` overrides."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from conf.generator import GENERATOR_NAMES, only_own_options
from conf.schema import CampaignConfig


class ConfigError(ValueError):
    """A configuration that cannot run: names the offending key(s) and why."""


def default_config_path() -> Path:
    """Path of the packaged default campaign config (``conf/campaign.yaml``)."""
    return Path(str(resources.files("conf") / "campaign.yaml"))


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` assignment in place; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    parts = key.strip().split(".")
    node: dict[str, Any] = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a mapping")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({exc})") from exc


def validate_config(data: dict[str, Any], source: str = "<config>", overrides: Iterable[str] = ()) -> CampaignConfig:
    """Validate a plain mapping; every problem is reported with its dotted key path and, when an ``--set``
    override put it there, with that override (not blamed on the file)."""
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        keys = [(a.partition("=")[0].strip(), a) for a in overrides]
        lines, from_set = [], 0
        for err in exc.errors():
            where = ".".join(str(p) for p in _without_tag(err["loc"])) or "(top level)"
            culprit = [a for k, a in keys if where == k or where.startswith(k + ".") or k.startswith(where + ".")]
            from_set += bool(culprit)
            lines.append(f"  {where}: {err['msg']}" + (f" (from --set {culprit[-1]})" if culprit else ""))
        origin = "the --set overrides" if from_set == len(lines) else source
        raise ConfigError(f"invalid configuration ({origin}):\n" + "\n".join(lines)) from None


def _without_tag(loc: tuple) -> tuple:
    """An error's key path without the generator union's tag (``generator.diffusion.diffusion.steps`` is the
    user's ``generator.diffusion.steps``)."""
    return loc[:1] + loc[2:] if len(loc) > 1 and loc[0] == "generator" and loc[1] in GENERATOR_NAMES else loc


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> CampaignConfig:
    """Read a YAML config (default: the packaged ``campaign.yaml``), apply overrides, validate.

    Parameters
    ----------
    path
        YAML file; ``None`` uses :func:`default_config_path`.
    overrides
        ``dotted.key=value`` strings, values parsed as YAML (``relax.fmax=0.1``, ``rounds=2``).

    Raises
    ------
    ConfigError
        Missing file, bad YAML, unknown key or invalid value.
    """
    path = Path(path) if path is not None else default_config_path()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    overrides = list(overrides)
    switched = [a.partition("=")[2].strip() for a in overrides if a.partition("=")[0].strip() == "generator.name"]
    if switched and isinstance(data.get("generator"), dict):  # the file's options of other generators go
        data["generator"] = only_own_options(data["generator"], switched[-1])
    for assignment in overrides:
        apply_override(data, assignment)
    return validate_config(data, source=str(path), overrides=overrides)
