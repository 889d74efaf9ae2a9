"""pymatgen's CP2K data folder, and a pruned copy of it that holds only what the settings can use.

pymatgen reads a whole per-element YAML file (every basis set and potential CP2K ships for that element:
200-300 kB, 1-3 s of parsing each) for every calculation. The pruned folder keeps, per element, only basis
sets of the configured family (with and without "-SR") and GTH potentials of the configured functional, so
pymatgen picks exactly what it would pick from the full folder (tested on the written input) in a fraction
of the time. Elements are pruned on first use, atomically; the full folder stays the source.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from conf.dft import CP2KSettings

CACHE = Path.home() / ".cache" / "matloop"


def ensure_pmg_data_dir(settings: CP2KSettings) -> Path:
    """pymatgen's full CP2K data folder: the configured one, PMG_CP2K_DATA_DIR, or one built once with
    ``pmg config --cp2k`` under ~/.cache/matloop."""
    if settings.pmg_data_dir is not None:
        return settings.pmg_data_dir
    if os.environ.get("MATLOOP_FULL_PMG_CP2K_DATA_DIR"):  # the source of a pruned folder set in this env
        return Path(os.environ["MATLOOP_FULL_PMG_CP2K_DATA_DIR"])
    if os.environ.get("PMG_CP2K_DATA_DIR"):
        return Path(os.environ["PMG_CP2K_DATA_DIR"])
    target = CACHE / "cp2k-pmg-data"
    if not (target / "O").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        pmg = Path(sys.executable).with_name("pmg")
        subprocess.run([str(pmg), "config", "--cp2k", str(settings.cp2k_data_dir), str(target)], input="y\n",
                       text=True, check=True, capture_output=True)
    return target


def pruned_data_dir(settings: CP2KSettings, source: Path) -> Path:
    """Where the pruned copy of ``source`` for these settings lives (elements are added by :func:`prune`)."""
    key = hashlib.sha256(f"{source.resolve()}|{settings.basis_family}|{settings.functional}".encode())
    return CACHE / f"cp2k-pmg-data-{key.hexdigest()[:12]}"


def _keeps(entry: dict, prefixes: tuple[str, ...]) -> bool:
    names = [str(entry.get("name") or "")] + [str(a) for a in entry.get("alias_names") or []]
    return any(n.startswith(prefixes) for n in names)


def prune(settings: CP2KSettings, source: Path, target: Path, elements: Iterable[str]) -> None:
    """Write ``target/<El>`` for every element not yet there: ``source/<El>`` restricted to the settings."""
    from ruamel.yaml import YAML

    families = (settings.basis_family, settings.basis_family.replace("-SR", ""))
    potentials = (f"GTH-{settings.functional}",)
    target.mkdir(parents=True, exist_ok=True)
    for el in sorted(set(elements)):
        out, src = target / el, source / el
        if out.exists() or not src.is_file():
            continue
        yaml = YAML()
        with open(src, encoding="utf-8") as fh:
            data = yaml.load(fh)
        data["basis_sets"] = {k: v for k, v in (data.get("basis_sets") or {}).items() if _keeps(v, families)}
        data["potentials"] = {k: v for k, v in (data.get("potentials") or {}).items() if _keeps(v, potentials)}
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            yaml.dump(data, fh)
        os.replace(tmp, out)
