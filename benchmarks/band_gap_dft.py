"""DFT-checked subset of the band-gap benchmark: real CP2K (PBE, the campaign's default static settings with the
band-gap print) on stable relaxed candidates of a band-gap run, compared with what the campaign's predictor said
and with the Materials Project gap of the composition the benchmark judges by.

    python benchmarks/band_gap_dft.py benchmarks/results/band_gap-Li-V-O-<commit>.csv \\
        --workdir campaigns/band_gap-Li-V-O [--n 6] [--max-sites 12]

Picks stable relaxations with distinct formulas (hits first, then smallest cells), runs each through matloop's
own DFT worker (``python -m tasks.dft.worker``: atomate2's CP2K maker, custodian), and writes
``<results>-dft.json``: per structure the CP2K gap, the predictor's gap ± sigma, the MP gap, the wall time;
and the predictor's and the MP table's MAE against CP2K.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, help="The band-gap benchmark's CSV of judged relaxations.")
    p.add_argument("--workdir", type=Path, required=True, help="The band-gap benchmark's work folder (its store).")
    p.add_argument("--n", type=int, default=6, help="Structures to compute.")
    p.add_argument("--max-sites", type=int, default=12, help="Largest cell computed.")
    p.add_argument("--timeout", type=int, default=3600, help="Seconds per calculation.")
    p.add_argument("--formulas", help="Comma-separated: only these compositions (e.g. a recheck).")
    args = p.parse_args(argv)
    for path in (args.results, args.workdir / "discovery.db"):
        if not path.is_file():
            p.error(f"{path} not found")
    return args


def relaxed_structures(db: Path, hashes: list[str]) -> dict[str, dict]:
    """Relaxed structure (pymatgen dict) and the stored predictor gap of each candidate hash."""
    from sqlalchemy import select

    from tasks.store.engine import transaction
    from tasks.store.tables import CandidateRow, PropertyRow, RelaxationRow

    url = f"sqlite:///{db.resolve()}"
    out: dict[str, dict] = {}
    with transaction(url) as s:
        for h, text in s.execute(select(CandidateRow.hash, RelaxationRow.final_structure).join(RelaxationRow).where(
                CandidateRow.hash.in_(hashes), RelaxationRow.status == "converged")).all():
            out.setdefault(h, {"structure": json.loads(text)})
        for h, value, sigma in s.execute(select(CandidateRow.hash, PropertyRow.value, PropertyRow.uncertainty).join(
                PropertyRow).where(CandidateRow.hash.in_(hashes), PropertyRow.name == "band_gap",
                                   PropertyRow.source == "predictor")).all():
            if h in out:
                out[h].update(predicted=value, sigma=sigma)
    return out


def pick(rows, n: int, max_sites: int, structures: dict[str, dict]) -> list[dict]:
    """Stable relaxations with distinct formulas and a relaxed cell of at most ``max_sites``: hits first."""
    from pymatgen.core import Structure

    chosen, seen = [], set()
    stable = rows[rows["stable"]].copy()
    stable["sites"] = [len(Structure.from_dict(structures[h]["structure"])) if h in structures else 10**6
                       for h in stable["hash"]]
    for r in stable.sort_values(["hit", "sites"], ascending=[False, True]).itertuples():
        if r.formula in seen or r.sites > max_sites or r.hash not in structures:
            continue
        seen.add(r.formula)
        chosen.append({"hash": r.hash, "formula": r.formula, "arm": r.arm, "sites": int(r.sites),
                       "truth_gap": None if r.truth_gap != r.truth_gap else float(r.truth_gap)})
        if len(chosen) == n:
            break
    return chosen


def run_cp2k(structure: dict, label: str, calc_dir: Path, timeout: int) -> dict:
    """One static CP2K run through matloop's worker; its gap (eV), status and wall time."""
    from conf.dft import CP2KSettings
    from tasks.dft.inputs import cp2k_settings_hash
    from tasks.dft.run import CalcSpec, dft_environment
    from tasks.dft.worker import command, read_result, write_spec

    settings = CP2KSettings()
    write_spec(CalcSpec(label=label, structure=structure, settings=settings,
                        settings_hash=cp2k_settings_hash(settings)), calc_dir)
    if read_result(calc_dir) is None:  # a finished folder is reused
        proc = subprocess.Popen(command(calc_dir), env={**os.environ, **dft_environment(settings)}, cwd=calc_dir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # the worker and its CP2K: the whole process group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"status": "timeout", "dft_gap": None, "wall_s": timeout}
    result = read_result(calc_dir)
    if result is None:
        return {"status": "no result", "dft_gap": None, "wall_s": None}
    return {"status": result.status, "reason": result.reason[:200], "dft_gap": result.band_gap,
            "wall_s": result.wall_time_s}


def main(argv: list[str] | None = None) -> dict:
    import numpy as np
    import pandas as pd

    args = parse_args(argv)
    rows = pd.read_csv(args.results)
    structures = relaxed_structures(args.workdir / "discovery.db", sorted(set(rows.loc[rows["stable"], "hash"])))
    out_path = args.results.with_name(args.results.stem + "-dft.json")
    done = []
    if args.formulas:
        rows = rows[rows["formula"].isin(args.formulas.split(","))]
    for item in pick(rows, args.n, args.max_sites, structures):
        print(f"CP2K {item['formula']} ({item['sites']} sites, {item['arm']})", flush=True)
        known = structures[item["hash"]]
        item.update(predicted=known.get("predicted"), sigma=known.get("sigma"),
                    **run_cp2k(known["structure"], item["hash"], args.workdir / "dft-check" / item["hash"],
                               args.timeout))
        print(f"  {item['status']}: CP2K {item['dft_gap']}, predictor {item['predicted']}, MP {item['truth_gap']}",
              flush=True)
        done.append(item)
        ok = [d for d in done if d["dft_gap"] is not None]
        summary = {"n": len(done), "computed": len(ok),
                   "predictor_mae_vs_cp2k": float(np.mean([abs(d["predicted"] - d["dft_gap"]) for d in ok
                                                           if d["predicted"] is not None])) if ok else None,
                   "mp_mae_vs_cp2k": float(np.mean([abs(d["truth_gap"] - d["dft_gap"]) for d in ok
                                                    if d["truth_gap"] is not None])) if ok else None}
        out_path.write_text(json.dumps({"results": str(args.results), "summary": summary, "structures": done},
                                       indent=1, default=str))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
